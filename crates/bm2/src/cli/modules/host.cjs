// bm2's module host: runs one module as a managed app. Written by bm2 to
// $BM2_HOME/modules/.host/host.cjs; started as `node host.cjs <entry>` (or bun).
//
// It imports the module's entry. When the default export has `init`, that is a BM2 module:
// init(pm, config) is called with a ProcessManager of bm2's JS package and the module's
// settings, the host stays up, and on SIGTERM/SIGINT (stop, restart, uninstall, daemon
// shutdown) it awaits destroy() before exiting. An entry without `init` has run as a plain
// script on import, and the host leaves it be.
'use strict';

const path = require('path');
const { pathToFileURL } = require('url');

const entry = process.argv[2];
if (!entry) {
  console.error('[bm2 module host] no module entry given');
  process.exit(2);
}

function config() {
  const text = process.env.BM2_MODULE_CONFIG;
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch (e) {
    console.error('[bm2 module host] BM2_MODULE_CONFIG is not JSON:', e.message);
    return {};
  }
}

function processManager() {
  let pkg;
  try {
    pkg = require(path.join(__dirname, 'bm2', 'index.js'));
  } catch (e) {
    throw new Error(
      "bm2's JavaScript package (ProcessManager) is not available to the module host (" +
        e.message + '): this bm2 build does not include it',
    );
  }
  const ProcessManager = pkg.ProcessManager || (pkg.default && pkg.default.ProcessManager);
  return new ProcessManager({ home: process.env.BM2_HOME, bin: process.env.BM2_BIN });
}

async function main() {
  const loaded = await import(pathToFileURL(path.resolve(entry)).href);
  let mod = loaded && loaded.default !== undefined ? loaded.default : loaded;
  // A CommonJS module compiled from `export default` keeps it under `.default`.
  if (mod && typeof mod.init !== 'function' && mod.default && typeof mod.default.init === 'function') {
    mod = mod.default;
  }
  if (!mod || typeof mod.init !== 'function') return; // a plain script: it runs on its own
  const pm = processManager();
  const keepAlive = setInterval(() => {}, 1 << 30);
  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    let code = 0;
    try {
      if (typeof mod.destroy === 'function') await mod.destroy();
    } catch (e) {
      console.error('[bm2 module host] destroy() failed:', e && e.stack ? e.stack : e);
      code = 1;
    }
    try {
      if (pm && typeof pm.close === 'function') await pm.close();
    } catch (_) {
      // nothing more to release
    }
    clearInterval(keepAlive);
    console.log(`[bm2 module host] ${mod.name || path.basename(entry)} destroyed (${signal})`);
    process.exit(code);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  await mod.init(pm, config());
}

main().catch((e) => {
  console.error('[bm2 module host] module failed:', e && e.stack ? e.stack : e);
  process.exit(1);
});
