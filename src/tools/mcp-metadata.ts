// RFC 9728 OAuth 2.0 Protected Resource Metadata for the MCP endpoint, so MCP clients can discover
// how to authenticate to aam (bearer virtual key or JWT-SVID in the Authorization header).
// The lead serves it at /.well-known/oauth-protected-resource[/mcp] and points 401s at it.

export interface ProtectedResourceInput {
  /** Public base URL of aam, e.g. https://aam.example.com */
  baseUrl: string;
  /** MCP endpoint path (default /mcp). */
  path?: string;
  /** Issuers whose tokens aam accepts (aam's own JWT-SVID issuer by default). */
  authorizationServers?: string[];
  documentation?: string;
}

export function protectedResourceMetadata(i: ProtectedResourceInput): Record<string, unknown> {
  const base = i.baseUrl.replace(/\/+$/, '');
  return {
    resource: base + (i.path ?? '/mcp'),
    authorization_servers: i.authorizationServers ?? [base],
    bearer_methods_supported: ['header'],
    resource_name: 'aam MCP gateway',
    ...(i.documentation ? { resource_documentation: i.documentation } : {}),
  };
}

/** WWW-Authenticate value for a 401 on /mcp (RFC 9728 section 5.1). */
export function wwwAuthenticate(baseUrl: string, path = '/mcp'): string {
  const base = baseUrl.replace(/\/+$/, '');
  return `Bearer resource_metadata="${base}/.well-known/oauth-protected-resource${path}"`;
}
