// The official @a2a-js/sdk client reaching an agent only through aam, as `key`'s holder, over
// JSON-RPC or HTTP+JSON, built from a minimal card naming aam's endpoint for it.
import { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory, RestTransportFactory } from '@a2a-js/sdk/client';

export function sdkClientThroughAam(aamUrl: string, agent: string, key: string, rest = false) {
  const fetchImpl: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('authorization', `Bearer ${key}`);
    return fetch(input, { ...init, headers });
  };
  const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
    transports: [rest ? new RestTransportFactory({ fetchImpl }) : new JsonRpcTransportFactory({ fetchImpl })],
    ...(rest ? { preferredTransports: ['HTTP+JSON'] } : {}),
    cardResolver: undefined,
  }));
  const card = {
    name: agent, description: agent, version: '1.0.0',
    supportedInterfaces: [{ url: `${aamUrl}/a2a/${agent}`, protocolBinding: rest ? 'HTTP+JSON' : 'JSONRPC', protocolVersion: '1.0' }],
    capabilities: { streaming: true, pushNotifications: false, extensions: [] },
    defaultInputModes: ['text/plain'], defaultOutputModes: ['text/plain'], skills: [],
  };
  return factory.createFromAgentCard(card as never);
}
