"use strict";
/** The daemon's event stream (`POST /v1/events`) as an EventEmitter and an async iterator. */
Object.defineProperty(exports, "__esModule", { value: true });
exports.EventStream = void 0;
exports.subscribe = subscribe;
exports.targetList = targetList;
const node_events_1 = require("node:events");
const errors_1 = require("./errors");
const transport_1 = require("./transport");
/**
 * A live subscription. Emits each message under its `type` (`process:event`, `log:out`,
 * `log:err`, `process:msg`, `lagged`) and under `event`; `error` when the connection fails;
 * `close` once it ended (the daemon stopped, or `close()`). Iterate it with `for await`.
 */
class EventStream extends node_events_1.EventEmitter {
    res;
    closed = false;
    finished = false;
    queue = [];
    waiters = [];
    iterating = false;
    /** @internal */
    attach(res, onSubscribed, onFail) {
        this.res = res;
        let live = false;
        (0, transport_1.eachLine)(res, (line) => {
            let msg;
            try {
                msg = JSON.parse(line);
            }
            catch {
                this.fail(new errors_1.Bm2Error("bad_response", `an event that is not JSON: ${line.slice(0, 200)}`));
                return;
            }
            if (!live) {
                if (msg.type === "subscribed") {
                    live = true;
                    onSubscribed();
                    return;
                }
                onFail(new errors_1.Bm2Error("bad_response", `the event stream did not begin with {"type":"subscribed"}: ${line.slice(0, 200)}`));
                this.close();
                return;
            }
            this.deliver(msg);
        });
        res.on("error", (e) => (live ? this.fail(e) : onFail(e)));
        res.on("aborted", () => (live ? this.fail(new errors_1.Bm2Error("daemon_unreachable", "the event stream was cut")) : undefined));
        res.on("close", () => {
            if (!live)
                onFail(new errors_1.Bm2Error("daemon_unreachable", "the event stream ended before it was live"));
            this.finish();
        });
    }
    deliver(msg) {
        if (this.iterating) {
            const w = this.waiters.shift();
            if (w)
                w({ value: msg, done: false });
            else
                this.queue.push(msg);
        }
        this.emit(msg.type, msg);
        this.emit("event", msg);
    }
    fail(e) {
        if (this.listenerCount("error") > 0)
            this.emit("error", e);
        this.close();
    }
    finish() {
        if (this.finished)
            return;
        this.finished = true;
        this.closed = true;
        this.res = undefined;
        for (const w of this.waiters.splice(0))
            w({ value: undefined, done: true });
        this.emit("close");
    }
    /** Ends the subscription (idempotent). */
    close() {
        if (this.closed)
            return;
        this.closed = true;
        const res = this.res;
        if (res) {
            res.destroy();
        }
        else {
            this.finish();
        }
    }
    /** True once the subscription ended. */
    get isClosed() {
        return this.closed;
    }
    [Symbol.asyncIterator]() {
        this.iterating = true;
        return {
            next: () => {
                const v = this.queue.shift();
                if (v)
                    return Promise.resolve({ value: v, done: false });
                if (this.closed)
                    return Promise.resolve({ value: undefined, done: true });
                return new Promise((resolve) => this.waiters.push(resolve));
            },
            return: () => {
                this.close();
                return Promise.resolve({ value: undefined, done: true });
            },
        };
    }
}
exports.EventStream = EventStream;
/** Subscribes; resolves once the daemon confirmed the subscription is live. */
async function subscribe(t, opts = {}) {
    const body = { logs: opts.logs === true };
    if (opts.targets !== undefined)
        body.targets = targetList(opts.targets);
    const res = await t.open("POST", "/v1/events", body);
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300)
        throw (0, transport_1.errorOf)(status, await (0, transport_1.readAll)(res), "/v1/events");
    const stream = new EventStream();
    await new Promise((resolve, reject) => stream.attach(res, resolve, reject));
    return stream;
}
/** Targets as the API takes them: strings. */
function targetList(t) {
    return (Array.isArray(t) ? t : [t]).map(String);
}
