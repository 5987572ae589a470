"use strict";
/** HTTP/1.1 over the daemon's Unix socket, starting the daemon with `bm2 ping` when it is not running. */
var __createBinding = (this && this.__createBinding) || (Object.create ? (function(o, m, k, k2) {
    if (k2 === undefined) k2 = k;
    var desc = Object.getOwnPropertyDescriptor(m, k);
    if (!desc || ("get" in desc ? !m.__esModule : desc.writable || desc.configurable)) {
      desc = { enumerable: true, get: function() { return m[k]; } };
    }
    Object.defineProperty(o, k2, desc);
}) : (function(o, m, k, k2) {
    if (k2 === undefined) k2 = k;
    o[k2] = m[k];
}));
var __setModuleDefault = (this && this.__setModuleDefault) || (Object.create ? (function(o, v) {
    Object.defineProperty(o, "default", { enumerable: true, value: v });
}) : function(o, v) {
    o["default"] = v;
});
var __importStar = (this && this.__importStar) || (function () {
    var ownKeys = function(o) {
        ownKeys = Object.getOwnPropertyNames || function (o) {
            var ar = [];
            for (var k in o) if (Object.prototype.hasOwnProperty.call(o, k)) ar[ar.length] = k;
            return ar;
        };
        return ownKeys(o);
    };
    return function (mod) {
        if (mod && mod.__esModule) return mod;
        var result = {};
        if (mod != null) for (var k = ownKeys(mod), i = 0; i < k.length; i++) if (k[i] !== "default") __createBinding(result, mod, k[i]);
        __setModuleDefault(result, mod);
        return result;
    };
})();
Object.defineProperty(exports, "__esModule", { value: true });
exports.Transport = void 0;
exports.resolveConnection = resolveConnection;
exports.errorOf = errorOf;
exports.readAll = readAll;
exports.eachLine = eachLine;
exports.runBin = runBin;
const http = __importStar(require("node:http"));
const os = __importStar(require("node:os"));
const path = __importStar(require("node:path"));
const node_child_process_1 = require("node:child_process");
const errors_1 = require("./errors");
/** The home and binary a client uses, from its options and the environment. */
function resolveConnection(opts = {}) {
    const home = opts.home ?? process.env.BM2_HOME ?? path.join(os.homedir(), ".bm2");
    const bin = opts.bin ?? process.env.BM2_BIN ?? "bm2";
    return { home: path.resolve(home), bin };
}
/** Errors of `connect` that mean nobody listens on the socket. */
function isNotListening(e) {
    const code = e?.code;
    return code === "ENOENT" || code === "ECONNREFUSED";
}
class Transport {
    home;
    bin;
    socketPath;
    starting;
    constructor(opts = {}) {
        const { home, bin } = resolveConnection(opts);
        this.home = home;
        this.bin = bin;
        this.socketPath = path.join(home, "daemon.sock");
    }
    /** Starts the daemon (the CLI's `ping` does, and waits until it listens). One at a time. */
    startDaemon() {
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
    async open(method, route, body, autostart = true, accept = "application/json") {
        try {
            return await this.openOnce(method, route, body, accept);
        }
        catch (e) {
            if (!isNotListening(e))
                throw unreachable(this.socketPath, e);
            if (!autostart)
                throw unreachable(this.socketPath, e);
            await this.startDaemon();
            try {
                return await this.openOnce(method, route, body, accept);
            }
            catch (e2) {
                throw unreachable(this.socketPath, e2);
            }
        }
    }
    openOnce(method, route, body, accept) {
        return new Promise((resolve, reject) => {
            const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
            const headers = { accept };
            if (payload) {
                headers["content-type"] = "application/json";
                headers["content-length"] = payload.length;
            }
            const req = http.request({ socketPath: this.socketPath, method, path: route, headers, agent: false }, resolve);
            req.on("error", reject);
            req.end(payload);
        });
    }
    /** A request whose answer is JSON; a non-2xx answer becomes a `Bm2Error`. */
    async json(method, route, body, autostart = true) {
        const text = await this.text(method, route, body, autostart);
        try {
            return JSON.parse(text);
        }
        catch (e) {
            throw new errors_1.Bm2Error("bad_response", `the daemon's answer to ${route} is not JSON: ${text.slice(0, 200)}`, {
                cause: e,
            });
        }
    }
    /** A request whose answer is text; a non-2xx answer becomes a `Bm2Error`. */
    async text(method, route, body, autostart = true, accept = "application/json") {
        const res = await this.open(method, route, body, autostart, accept);
        const text = await readAll(res);
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300)
            throw errorOf(status, text, route);
        return text;
    }
}
exports.Transport = Transport;
/** The error of a non-2xx answer with its body. */
function errorOf(status, text, route) {
    try {
        const body = JSON.parse(text);
        if (body && typeof body.code === "string" && typeof body.message === "string") {
            return errors_1.Bm2Error.fromBody(body, status);
        }
    }
    catch {
        // not a bm2 error body: reported below
    }
    return new errors_1.Bm2Error("http", `${route}: HTTP ${status}: ${text.slice(0, 500)}`, { status });
}
function readAll(res) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        res.on("error", reject);
        res.on("aborted", () => reject(new errors_1.Bm2Error("daemon_unreachable", "the daemon closed the connection mid-answer")));
    });
}
/** Calls `fn` with each complete line of a streamed answer (NDJSON). */
function eachLine(res, fn) {
    let rest = "";
    res.setEncoding("utf8");
    res.on("data", (chunk) => {
        rest += chunk;
        let nl;
        while ((nl = rest.indexOf("\n")) >= 0) {
            const line = rest.slice(0, nl);
            rest = rest.slice(nl + 1);
            if (line.trim() !== "")
                fn(line);
        }
    });
    res.on("end", () => {
        if (rest.trim() !== "")
            fn(rest);
        rest = "";
    });
}
function unreachable(socket, e) {
    if (e instanceof errors_1.Bm2Error)
        return e;
    const msg = e?.message ?? String(e);
    return new errors_1.Bm2Error("daemon_unreachable", `cannot reach the bm2 daemon at ${socket}: ${msg}`, {
        hint: "start it with `bm2 ping`, or check BM2_HOME",
        cause: e,
    });
}
/** Runs the bm2 binary with BM2_HOME set; rejects with its stderr when it fails. */
function runBin(bin, args, home) {
    return new Promise((resolve, reject) => {
        let child;
        try {
            child = (0, node_child_process_1.spawn)(bin, args, {
                env: { ...process.env, BM2_HOME: home },
                stdio: ["ignore", "ignore", "pipe"],
            });
        }
        catch (e) {
            reject(startFailed(bin, e.message, e));
            return;
        }
        let stderr = "";
        child.stderr?.setEncoding("utf8");
        child.stderr?.on("data", (d) => {
            if (stderr.length < 4000)
                stderr += d;
        });
        child.on("error", (e) => reject(startFailed(bin, e.message, e)));
        // 'exit', not 'close': the daemon it starts may hold inherited descriptors.
        child.on("exit", (code, signal) => {
            child.stderr?.destroy();
            if (code === 0)
                resolve();
            else
                reject(startFailed(bin, `\`${bin} ${args.join(" ")}\` exited with ${code ?? signal}: ${stderr.trim()}`));
        });
    });
}
function startFailed(bin, message, cause) {
    return new errors_1.Bm2Error("daemon_start_failed", `cannot start the bm2 daemon with ${bin}: ${message}`, {
        hint: "install bm2 on PATH, or set BM2_BIN (or the `bin` option) to the bm2 binary",
        cause,
    });
}
