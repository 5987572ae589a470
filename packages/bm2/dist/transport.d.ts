/** HTTP/1.1 over the daemon's Unix socket, starting the daemon with `bm2 ping` when it is not running. */
import * as http from "node:http";
import { Bm2Error } from "./errors";
/** Where the daemon lives and which binary starts it. */
export interface ConnectionOptions {
    /** The daemon's home: `$BM2_HOME`, else `~/.bm2`. */
    home?: string;
    /** The bm2 binary that starts the daemon: `$BM2_BIN`, else `bm2` on `PATH`. */
    bin?: string;
}
/** The home and binary a client uses, from its options and the environment. */
export declare function resolveConnection(opts?: ConnectionOptions): {
    home: string;
    bin: string;
};
export declare class Transport {
    readonly home: string;
    readonly bin: string;
    readonly socketPath: string;
    private starting;
    constructor(opts?: ConnectionOptions);
    /** Starts the daemon (the CLI's `ping` does, and waits until it listens). One at a time. */
    startDaemon(): Promise<void>;
    /**
     * Sends a request and gives the response once its headers arrived. When nobody listens on
     * the socket, starts the daemon (unless `autostart` is false) and tries once more.
     */
    open(method: string, route: string, body?: unknown, autostart?: boolean, accept?: string): Promise<http.IncomingMessage>;
    private openOnce;
    /** A request whose answer is JSON; a non-2xx answer becomes a `Bm2Error`. */
    json<T>(method: string, route: string, body?: unknown, autostart?: boolean): Promise<T>;
    /** A request whose answer is text; a non-2xx answer becomes a `Bm2Error`. */
    text(method: string, route: string, body?: unknown, autostart?: boolean, accept?: string): Promise<string>;
}
/** The error of a non-2xx answer with its body. */
export declare function errorOf(status: number, text: string, route: string): Bm2Error;
export declare function readAll(res: http.IncomingMessage): Promise<string>;
/** Calls `fn` with each complete line of a streamed answer (NDJSON). */
export declare function eachLine(res: http.IncomingMessage, fn: (line: string) => void): void;
/** Runs the bm2 binary with BM2_HOME set; rejects with its stderr when it fails. */
export declare function runBin(bin: string, args: string[], home: string): Promise<void>;
