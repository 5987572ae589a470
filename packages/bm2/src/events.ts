/** The daemon's event stream (`POST /v1/events`) as an EventEmitter and an async iterator. */

import { EventEmitter } from "node:events";
import type * as http from "node:http";
import { Bm2Error } from "./errors";
import { Transport, eachLine, errorOf, readAll } from "./transport";
import type { Bm2Event } from "./types";

/** What to subscribe to. */
export interface EventsOptions {
  /** Also stream the apps' output lines (`log:out`, `log:err`). */
  logs?: boolean;
  /** Only these processes (ids, names, namespaces, `all`); none = every process. */
  targets?: string | number | Array<string | number>;
}

/**
 * A live subscription. Emits each message under its `type` (`process:event`, `log:out`,
 * `log:err`, `process:msg`, `lagged`) and under `event`; `error` when the connection fails;
 * `close` once it ended (the daemon stopped, or `close()`). Iterate it with `for await`.
 */
export class EventStream extends EventEmitter {
  private res: http.IncomingMessage | undefined;
  private closed = false;
  private finished = false;
  private queue: Bm2Event[] = [];
  private waiters: Array<(r: IteratorResult<Bm2Event>) => void> = [];
  private iterating = false;

  /** @internal */
  attach(res: http.IncomingMessage, onSubscribed: () => void, onFail: (e: Error) => void): void {
    this.res = res;
    let live = false;
    eachLine(res, (line) => {
      let msg: { type?: string };
      try {
        msg = JSON.parse(line);
      } catch {
        this.fail(new Bm2Error("bad_response", `an event that is not JSON: ${line.slice(0, 200)}`));
        return;
      }
      if (!live) {
        if (msg.type === "subscribed") {
          live = true;
          onSubscribed();
          return;
        }
        onFail(new Bm2Error("bad_response", `the event stream did not begin with {"type":"subscribed"}: ${line.slice(0, 200)}`));
        this.close();
        return;
      }
      this.deliver(msg as Bm2Event);
    });
    res.on("error", (e) => (live ? this.fail(e) : onFail(e)));
    res.on("aborted", () => (live ? this.fail(new Bm2Error("daemon_unreachable", "the event stream was cut")) : undefined));
    res.on("close", () => {
      if (!live) onFail(new Bm2Error("daemon_unreachable", "the event stream ended before it was live"));
      this.finish();
    });
  }

  private deliver(msg: Bm2Event): void {
    if (this.iterating) {
      const w = this.waiters.shift();
      if (w) w({ value: msg, done: false });
      else this.queue.push(msg);
    }
    this.emit(msg.type, msg);
    this.emit("event", msg);
  }

  private fail(e: Error): void {
    if (this.listenerCount("error") > 0) this.emit("error", e);
    this.close();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.closed = true;
    this.res = undefined;
    for (const w of this.waiters.splice(0)) w({ value: undefined, done: true });
    this.emit("close");
  }

  /** Ends the subscription (idempotent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const res = this.res;
    if (res) {
      res.destroy();
    } else {
      this.finish();
    }
  }

  /** True once the subscription ended. */
  get isClosed(): boolean {
    return this.closed;
  }

  [Symbol.asyncIterator](): AsyncIterator<Bm2Event> {
    this.iterating = true;
    return {
      next: () => {
        const v = this.queue.shift();
        if (v) return Promise.resolve({ value: v, done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.waiters.push(resolve));
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/** Subscribes; resolves once the daemon confirmed the subscription is live. */
export async function subscribe(t: Transport, opts: EventsOptions = {}): Promise<EventStream> {
  const body: { logs: boolean; targets?: string[] } = { logs: opts.logs === true };
  if (opts.targets !== undefined) body.targets = targetList(opts.targets);
  const res = await t.open("POST", "/v1/events", body);
  const status = res.statusCode ?? 0;
  if (status < 200 || status >= 300) throw errorOf(status, await readAll(res), "/v1/events");
  const stream = new EventStream();
  await new Promise<void>((resolve, reject) => stream.attach(res, resolve, reject));
  return stream;
}

/** Targets as the API takes them: strings. */
export function targetList(t: string | number | Array<string | number>): string[] {
  return (Array.isArray(t) ? t : [t]).map(String);
}
