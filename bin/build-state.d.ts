// Types of build-state.js (plain JavaScript so the launcher loads no type stripper).
export declare const STAMP_FILE: string;
export declare function sourceStamp(srcDir: string): string;
export declare function distState(root: string): 'fresh' | 'missing' | 'stale';
