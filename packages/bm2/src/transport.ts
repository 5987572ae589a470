/** HTTP/1.1 over the daemon's Unix socket, starting the daemon with `bm2 ping` when it is not running. */

import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { Bm2Error, ApiErrorBody } from "./errors";

/** Where the daemon lives and which binary starts it. */
export interface ConnectionOptions {
  /** The daemon's home: `$BM2_HOME`, else `~/.bm2`. */
  home?: string;
  /** The bm2 binary that starts the daemon: `$BM2_BIN`, else `bm2` on `PATH`. */
  bin?: string;
}

/** The home and binary a client uses, from its options and the environment. */
export function resolveConnection(opts: ConnectionOptions = {}): { home: string; bin: string } {
  const home = opts.home ?? process.env.BM2_HOME ?? path.join(os.homedir(), ".bm2");
  const bin = opts.bin ?? process.env.BM2_BIN ?? "bm2";
  return { home: path.resolve(home), bin };
}

/** Errors of `connect` that mean nobody listens on the socket. */
function isNotListening(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ECONNREFUSED";
}

export class Transport {
  readonly home: string;
  readonly bin: string;
  readonly socketPath: string;
  private starting: Promise<void> | undefined;

  constructor(opts: ConnectionOptions = {}) {
    const { home, bin } = resolveConnection(opts);
    this.home = home;
    this.bin = bin;
    this.socketPath = path.join(home, "daemon.sock");
  }

  /** Starts the daemon (the CLI's `ping` does, and waits until it listens). One at a time. */
  startDaemon(): Promise<void> {
    if (!this.starting) {
      this.starting = runBin(this.bin, ["ping"], this.home).finally(() => {
        this.starting = undefined;
      });
    }
    return this.starting;
  }

  /**
   * Sends a request and gives the response once its headers arrived. When nobody listens on
   * the socket, starts the daemon (unless `autostart` is false) and tries once more.
   */
  async open(
    method: string,
    route: string,
    body?: unknown,
    autostart = true,
    accept = "application/json",
  ): Promise<http.IncomingMessage> {
    try {
      return await this.openOnce(method, route, body, accept);
    } catch (e) {
      if (!isNotListening(e)) throw unreachable(this.socketPath, e);
      if (!autostart) throw unreachable(this.socketPath, e);
      await this.startDaemon();
      try {
        return await this.openOnce(method, route, body, accept);
      } catch (e2) {
        throw unreachable(this.socketPath, e2);
      }
    }
  }

  private openOnce(method: string, route: string, body: unknown, accept: string): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const headers: http.OutgoingHttpHeaders = { accept };
      if (payload) {
        headers["content-type"] = "application/json";
        headers["content-length"] = payload.length;
      }
      const req = http.request(
        { socketPath: this.socketPath, method, path: route, headers, agent: false },
        resolve,
      );
      req.on("error", reject);
      req.end(payload);
    });
  }

  /** A request whose answer is JSON; a non-2xx answer becomes a `Bm2Error`. */
  async json<T>(method: string, route: string, body?: unknown, autostart = true): Promise<T> {
    const text = await this.text(method, route, body, autostart);
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new Bm2Error("bad_response", `the daemon's answer to ${route} is not JSON: ${text.slice(0, 200)}`, {
        cause: e,
      });
    }
  }

  /** A request whose answer is text; a non-2xx answer becomes a `Bm2Error`. */
  async text(
    method: string,
    route: string,
    body?: unknown,
    autostart = true,
    accept = "application/json",
  ): Promise<string> {
    const res = await this.open(method, route, body, autostart, accept);
    const text = await readAll(res);
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) throw errorOf(status, text, route);
    return text;
  }
}

/** The error of a non-2xx answer with its body. */
export function errorOf(status: number, text: string, route: string): Bm2Error {
  try {
    const body = JSON.parse(text) as ApiErrorBody;
    if (body && typeof body.code === "string" && typeof body.message === "string") {
      return Bm2Error.fromBody(body, status);
    }
  } catch {
    // not a bm2 error body: reported below
  }
  return new Bm2Error("http", `${route}: HTTP ${status}: ${text.slice(0, 500)}`, { status });
}

export function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    res.on("error", reject);
    res.on("aborted", () => reject(new Bm2Error("daemon_unreachable", "the daemon closed the connection mid-answer")));
  });
}

/** Calls `fn` with each complete line of a streamed answer (NDJSON). */
export function eachLine(res: http.IncomingMessage, fn: (line: string) => void): void {
  let rest = "";
  res.setEncoding("utf8");
  res.on("data", (chunk: string) => {
    rest += chunk;
    let nl: number;
    while ((nl = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      if (line.trim() !== "") fn(line);
    }
  });
  res.on("end", () => {
    if (rest.trim() !== "") fn(rest);
    rest = "";
  });
}

function unreachable(socket: string, e: unknown): Bm2Error {
  if (e instanceof Bm2Error) return e;
  const msg = (e as Error | undefined)?.message ?? String(e);
  return new Bm2Error("daemon_unreachable", `cannot reach the bm2 daemon at ${socket}: ${msg}`, {
    hint: "start it with `bm2 ping`, or check BM2_HOME",
    cause: e,
  });
}

/** Runs the bm2 binary with BM2_HOME set; rejects with its stderr when it fails. */
export function runBin(bin: string, args: string[], home: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let child;
    try {
      child = spawn(bin, args, {
        env: { ...process.env, BM2_HOME: home },
        stdio: ["ignore", "ignore", "pipe"],
      });
    } catch (e) {
      reject(startFailed(bin, (e as Error).message, e));
      return;
    }
    let stderr = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (d: string) => {
      if (stderr.length < 4000) stderr += d;
    });
    child.on("error", (e) => reject(startFailed(bin, e.message, e)));
    // 'exit', not 'close': the daemon it starts may hold inherited descriptors.
    child.on("exit", (code, signal) => {
      child.stderr?.destroy();
      if (code === 0) resolve();
      else reject(startFailed(bin, `\`${bin} ${args.join(" ")}\` exited with ${code ?? signal}: ${stderr.trim()}`));
    });
  });
}

function startFailed(bin: string, message: string, cause?: unknown): Bm2Error {
  return new Bm2Error("daemon_start_failed", `cannot start the bm2 daemon with ${bin}: ${message}`, {
    hint: "install bm2 on PATH, or set BM2_BIN (or the `bin` option) to the bm2 binary",
    cause,
  });
}
