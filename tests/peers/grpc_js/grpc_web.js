#!/usr/bin/env node
// A gRPC-Web client over HTTP/1.1, as a browser's would speak it (Node's fetch, undici), for
// tests/grpc_stacks.rs against a tonic-web server: binary (`application/grpc-web+proto`) and
// text (`application/grpc-web-text`, base64) calls, a server stream, and health checks.
//
//   grpc_web.js client HOST:PORT  makes the calls there and prints, as one JSON array, what each
//                                 got back (the ground truth the test holds the dissection to),
//                                 in the report format of grpc_js.js and ../grpc_core.py.
'use strict';
const path = require('path');
const protobuf = require('protobufjs');

const root = protobuf.loadSync(path.join(__dirname, '..', '..', 'data', 'echo.proto'));
const EchoRequest = root.lookupType('test.echo.EchoRequest');
const EchoReply = root.lookupType('test.echo.EchoReply');
const encode = (type, fields) => Buffer.from(type.encode(type.create(fields)).finish());
const decode = (type, bytes) => type.toObject(type.decode(bytes), { defaults: true, longs: Number });

// A message as gRPC frames it: flags, a 32-bit length, the bytes.
function frame(flags, bytes) {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, bytes]);
}

// gRPC-Web text is base64 of each frame on its own, so padding may come mid-body.
function unbase64(text) {
  const parts = text.match(/[^=]+=*/g) || [];
  return Buffer.concat(parts.map((p) => Buffer.from(p, 'base64')));
}

// One call: its status, message, trailers (from the trailer frame) and answers.
async function call(base, p, request, answerOf, { text = false, metadata = {} } = {}) {
  const type = text ? 'application/grpc-web-text' : 'application/grpc-web+proto';
  const body = frame(0, request);
  const res = await fetch(base + p, {
    method: 'POST',
    headers: { 'content-type': type, accept: type, 'x-grpc-web': '1', ...metadata },
    body: text ? body.toString('base64') : body,
  });
  const raw = Buffer.from(await res.arrayBuffer());
  const bytes = text ? unbase64(raw.toString('latin1')) : raw;
  const answers = [];
  const trailers = {};
  for (let at = 0; at + 5 <= bytes.length;) {
    const len = bytes.readUInt32BE(at + 1);
    const content = bytes.subarray(at + 5, at + 5 + len);
    if (bytes[at] & 0x80) {
      for (const line of content.toString().split('\r\n')) {
        const colon = line.indexOf(':');
        if (colon > 0) trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
    } else {
      answers.push(answerOf(content));
    }
    at += 5 + len;
  }
  // A trailers-only answer has its status among the headers.
  const status = trailers['grpc-status'] ?? res.headers.get('grpc-status');
  const message = trailers['grpc-message'] ?? res.headers.get('grpc-message');
  const code = Number(status);
  return {
    path: p, encoding: null, timeout: null,
    code,
    details: code === 0 ? null : decodeURIComponent(message || ''),
    answers: code === 0 ? answers : [],
    trailers,
  };
}

async function client(target) {
  const base = 'http://' + target;
  const echoJson = (raw) => {
    const m = decode(EchoReply, raw);
    return { text: m.text, payload: Buffer.from(m.payload).toString('hex'), seq: m.seq };
  };
  const health = (raw) => ({ status: raw.length >= 2 && raw[0] === 0x08 ? raw[1] : 0 });
  const results = [];
  const unary = '/test.echo.Echo/Unary';
  results.push(await call(base, unary, encode(EchoRequest, { text: 'hello', seq: 1 }), echoJson,
    { metadata: { tenant: 'blue' } }));
  results.push(await call(base, unary,
    encode(EchoRequest, { text: 'as text', seq: 2, payload: Buffer.from([0, 1, 2, 0xff]) }), echoJson,
    { text: true }));
  results.push(await call(base, '/test.echo.Echo/ServerStream', encode(EchoRequest, { text: 'fan', seq: 7 }),
    echoJson));
  results.push(await call(base, '/test.echo.Echo/ServerStream', encode(EchoRequest, { text: 'fan text', seq: 8 }),
    echoJson, { text: true }));
  const check = '/grpc.health.v1.Health/Check';
  results.push(await call(base, check, Buffer.alloc(0), health));
  const unknown = Buffer.concat([Buffer.from([0x0a, 15]), Buffer.from('no.such.Service')]);
  results.push(await call(base, check, unknown, health));
  console.log(JSON.stringify(results));
}

if (process.argv[2] === 'client' && process.argv.length === 4) {
  client(process.argv[3]).catch((e) => { console.error(e); process.exit(1); });
} else {
  console.error('usage: grpc_web.js client HOST:PORT');
  process.exit(2);
}
