// Cluster benchmark app (bench/cluster.py): the smallest Node HTTP server.
// Listens on $PORT (bm2 gives each cluster instance a private PORT; PM2's cluster
// mode shares the one PORT set in the environment). Bound to 127.0.0.1: the
// benchmark uses loopback only.
require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT || 3000, '127.0.0.1');
