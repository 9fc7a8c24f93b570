// The reference peer for `trio-broadcast bench --reference`: the same protocol on Node's `ws`,
// the way a small Node service would write it (JSON per broadcast, ws's own send per client).
// Usage: node reference_ws.mjs PORT   (prints "trio-broadcast listening on http://127.0.0.1:PORT")
import { createRequire } from 'node:module';
const require = createRequire(process.env.WS_MODULE_DIR ?? import.meta.url);
const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0), path: '/ws/events', perMessageDeflate: false });
const epoch = Math.random().toString(16).slice(2, 10);
let seq = 0;
let nextId = 0;
wss.on('connection', (socket) => {
  const id = (nextId++).toString(16).padStart(12, '0');
  socket.send(JSON.stringify({ type: 'welcome', client_id: id, seq, epoch, connections: wss.clients.size, server: 'reference-ws', batch: false, limits: {} }));
  socket.on('message', (data) => {
    const publish = JSON.parse(data);
    seq += 1;
    const timestamp = new Date().toISOString();
    const frame = JSON.stringify({ type: 'message', seq, message: publish.message, timestamp, sender: id });
    for (const client of wss.clients) if (client !== socket && client.readyState === 1) client.send(frame);
    socket.send(JSON.stringify({ type: 'ack', seq, timestamp, ...(publish.id === undefined ? {} : { id: publish.id }) }));
  });
});
wss.on('listening', () => console.log(`trio-broadcast listening on http://127.0.0.1:${wss.address().port}`));
process.on('SIGTERM', () => process.exit(0));
