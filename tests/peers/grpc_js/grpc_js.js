#!/usr/bin/env node
// A gRPC peer built on @grpc/grpc-js over Node's http2 module (nghttp2), for
// tests/grpc_stacks.rs: the third HTTP/2 stack and HPACK encoder of those tests, with
// protobufjs encoding the messages. The same services and calls as ../grpc_core.py:
//
//   grpc_js.js server            serves test.echo.Echo and grpc.health.v1.Health on a free loopback
//                                port and prints it; "down" / "up" lines on stdin set the health
//                                check's answer, "drain" shuts it down gracefully (tryShutdown:
//                                one GOAWAY with the last stream taken, calls running finish);
//                                end of input stops the server.
//   grpc_js.js client HOST:PORT  makes the calls there and prints, as one JSON array, what each
//                                got back (the ground truth the test holds the dissection to).
//
// The server also answers server reflection about the echo service. The echo service answers
// as tests/common/echo.rs's does; a Unary "fail" is refused with
// INVALID_ARGUMENT, a Unary "slow" is answered after a second. grpc-js compresses no answer.
//
// With H2SCOPE_TLS_DIR set (cert.pem and key.pem, for "localhost"), both speak TLS, Node's
// OpenSSL; `node --tls-keylog=FILE` makes the client write its secrets.
'use strict';
const path = require('path');
const readline = require('readline');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { ReflectionService } = require('@grpc/reflection');
const protobuf = require('protobufjs');

const ECHO_PROTO = path.join(__dirname, '..', '..', 'data', 'echo.proto');
const root = protobuf.loadSync(ECHO_PROTO);
const EchoRequest = root.lookupType('test.echo.EchoRequest');
const EchoReply = root.lookupType('test.echo.EchoReply');
const FAIL_DETAILS = "refused 'fail': caf\u00e9 \u2014 50% off\nsecond line";
const TRAILER_BIN = Buffer.from([0x00, 0x01, 0xfe, 0xff]);

const fs = require('fs');
const tlsDir = process.env.H2SCOPE_TLS_DIR;
const pem = (name) => fs.readFileSync(path.join(tlsDir, name));
const serverCredentials = () => (tlsDir
  ? grpc.ServerCredentials.createSsl(null, [{ private_key: pem('key.pem'), cert_chain: pem('cert.pem') }])
  : grpc.ServerCredentials.createInsecure());
// Over TLS the certificate names localhost, whatever address is dialled.
const channel = (extra) => (tlsDir
  ? [grpc.credentials.createSsl(pem('cert.pem')), { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost', ...extra }]
  : [grpc.credentials.createInsecure(), extra]);

const same = (b) => b;
function method(name, requestStream, responseStream) {
  return {
    path: name, requestStream, responseStream,
    requestSerialize: same, requestDeserialize: same, responseSerialize: same, responseDeserialize: same,
  };
}
const ECHO = {
  Unary: method('/test.echo.Echo/Unary', false, false),
  ServerStream: method('/test.echo.Echo/ServerStream', false, true),
  ClientStream: method('/test.echo.Echo/ClientStream', true, false),
  Bidi: method('/test.echo.Echo/Bidi', true, true),
};
const HEALTH = { Check: method('/grpc.health.v1.Health/Check', false, false) };

const encode = (type, fields) => Buffer.from(type.encode(type.create(fields)).finish());
const decode = (type, bytes) => type.toObject(type.decode(bytes), { defaults: true, longs: Number });
const reply = (req, seq) => encode(EchoReply, { text: 'echo ' + req.text, payload: req.payload, seq });

function serve() {
  let serving = true;
  const server = new grpc.Server();
  server.addService(ECHO, {
    Unary(call, callback) {
      const req = decode(EchoRequest, call.request);
      if (req.text === 'fail') {
        callback({ code: grpc.status.INVALID_ARGUMENT, details: FAIL_DETAILS });
        return;
      }
      const trailers = new grpc.Metadata();
      trailers.set('checksum-bin', TRAILER_BIN);
      trailers.set('served-by', 'grpc-js');
      const answer = () => callback(null, reply(req, req.seq), trailers);
      if (req.text === 'slow') setTimeout(answer, 1000); else answer();
    },
    ServerStream(call) {
      const req = decode(EchoRequest, call.request);
      for (let i = 0; i < 3; i++) call.write(reply(req, i));
      call.end();
    },
    ClientStream(call, callback) {
      const texts = [];
      call.on('data', (raw) => texts.push(decode(EchoRequest, raw).text));
      call.on('end', () => callback(null, encode(EchoReply, { text: texts.join('+'), seq: texts.length })));
    },
    Bidi(call) {
      call.on('data', (raw) => {
        const req = decode(EchoRequest, raw);
        call.write(reply(req, req.seq));
      });
      call.on('end', () => call.end());
    },
  });
  server.addService(HEALTH, {
    Check(call, callback) {
      const raw = call.request;
      const service = raw.length > 2 && raw[0] === 0x0a ? raw.subarray(2).toString() : '';
      if (service !== '' && service !== 'test.echo.Echo') {
        callback({ code: grpc.status.NOT_FOUND, details: 'unknown service ' + service });
        return;
      }
      callback(null, Buffer.from([0x08, serving ? 1 : 2]));
    },
  });
  // Server reflection (@grpc/reflection, v1 and v1alpha) describes the echo service.
  new ReflectionService(protoLoader.loadSync(ECHO_PROTO)).addToServer(server);
  server.bindAsync('127.0.0.1:0', serverCredentials(), (err, port) => {
    if (err) throw err;
    console.log(port);
    const lines = readline.createInterface({ input: process.stdin });
    lines.on('line', (l) => {
      if (l.trim() === 'drain') server.tryShutdown(() => {});
      else serving = l.trim() !== 'down';
    });
    lines.on('close', () => server.forceShutdown());
  });
}

async function client(target) {
  const results = [];
  const plain = new grpc.Client(target, ...channel({}));
  const gzipped = new grpc.Client(target, ...channel({ 'grpc.default_compression_algorithm': 2 }));
  const deflated = new grpc.Client(target, ...channel({ 'grpc.default_compression_algorithm': 1 }));
  const deadline = (s) => ({ deadline: new Date(Date.now() + s * 1000) });
  const echoJson = (raw) => {
    const m = decode(EchoReply, raw);
    return { text: m.text, payload: Buffer.from(m.payload).toString('hex'), seq: m.seq };
  };
  const trailersOf = (md) => {
    const out = {};
    for (const [k, v] of Object.entries(md ? md.getMap() : {})) {
      out[k] = Buffer.isBuffer(v) ? v.toString('hex') : v;
    }
    return out;
  };
  // One call: its status, details, trailing metadata and answers, the encoding its requests
  // were sent in (gzip, deflate or none), and the deadline it was given (seconds).
  const call = (p, run, encoding = null, timeout = 10) => new Promise((resolve) => {
    const answers = [];
    run(deadline(timeout), answers, (err, md) => {
      results.push({
        path: p, encoding, timeout,
        code: err ? err.code : 0,
        details: err ? err.details : null,
        answers: err ? [] : answers,
        trailers: trailersOf(err ? err.metadata : md),
      });
      resolve();
    });
  });
  const unary = (ch, req, metadata, encoding, timeout) => call(ECHO.Unary.path, (opts, answers, done) => {
    let trailers;
    const c = ch.makeUnaryRequest(ECHO.Unary.path, same, same, encode(EchoRequest, req),
      metadata || new grpc.Metadata(), opts, (err, raw) => {
        if (!err) answers.push(echoJson(raw));
        // The status comes after the answer: wait for it to have the trailers.
        if (err) done(err); else if (trailers) done(null, trailers); else c.on('status', (s) => done(null, s.metadata));
      });
    c.on('status', (s) => { trailers = s.metadata; });
  }, encoding, timeout);
  const stream = (c, answers, done, toJson) => {
    c.on('data', (raw) => answers.push(toJson(raw)));
    c.on('error', (err) => done(err));
    c.on('status', (s) => { if (s.code === 0) done(null, s.metadata); });
  };

  const md = new grpc.Metadata();
  md.set('tenant', 'blue');
  md.set('trace-bin', Buffer.from([1, 2, 3]));
  await unary(plain, { text: 'hello', seq: 1 }, md);
  await unary(plain, { text: 'fail', seq: 2 });
  await unary(gzipped, { text: 'gzip ' + 'z'.repeat(300), seq: 3, payload: Buffer.from([...Array(256).keys()]) }, null, 'gzip');
  await unary(deflated, { text: 'deflate ' + 'd'.repeat(300), seq: 6, payload: Buffer.from([...Array(256).keys()]) }, null, 'deflate');
  await call(ECHO.ServerStream.path, (opts, answers, done) => {
    const c = plain.makeServerStreamRequest(ECHO.ServerStream.path, same, same,
      encode(EchoRequest, { text: 'fan', seq: 7 }), new grpc.Metadata(), opts);
    stream(c, answers, done, echoJson);
  });
  await call(ECHO.ClientStream.path, (opts, answers, done) => {
    let trailers;
    const c = plain.makeClientStreamRequest(ECHO.ClientStream.path, same, same, new grpc.Metadata(), opts,
      (err, raw) => {
        if (!err) answers.push(echoJson(raw));
        if (err) done(err); else if (trailers) done(null, trailers); else c.on('status', (s) => done(null, s.metadata));
      });
    c.on('status', (s) => { trailers = s.metadata; });
    ['a', 'b', 'c'].forEach((t, i) => c.write(encode(EchoRequest, { text: t, seq: i })));
    c.end();
  });
  await call(ECHO.Bidi.path, (opts, answers, done) => {
    const c = plain.makeBidiStreamRequest(ECHO.Bidi.path, same, same, new grpc.Metadata(), opts);
    stream(c, answers, done, echoJson);
    for (let i = 0; i < 4; i++) c.write(encode(EchoRequest, { text: `ping ${i}`, seq: i }));
    c.end();
  });
  for (const service of ['', 'no.such.Service']) {
    await call(HEALTH.Check.path, (opts, answers, done) => {
      const req = service ? Buffer.concat([Buffer.from([0x0a, service.length]), Buffer.from(service)]) : Buffer.alloc(0);
      let trailers;
      const c = plain.makeUnaryRequest(HEALTH.Check.path, same, same, req, new grpc.Metadata(), opts, (err, raw) => {
        if (!err) answers.push({ status: raw.length >= 2 && raw[0] === 0x08 ? raw[1] : 0 });
        if (err) done(err); else if (trailers) done(null, trailers); else c.on('status', (s) => done(null, s.metadata));
      });
      c.on('status', (s) => { trailers = s.metadata; });
    });
  }
  // A message sixteen times the initial window each way: many frames, flow control at work.
  const big = Buffer.alloc(1 << 20).map((_, i) => (i * 7) % 251);
  await unary(plain, { text: 'big', seq: 5, payload: big });
  // A deadline shorter than the answer takes (on the peers' servers): the client gives up.
  await unary(plain, { text: 'slow', seq: 4 }, null, null, 0.3);
  plain.close();
  gzipped.close();
  deflated.close();
  console.log(JSON.stringify(results));
}

if (process.argv[2] === 'server') serve();
else if (process.argv[2] === 'client' && process.argv.length === 4) client(process.argv[3]);
else { console.error('usage: grpc_js.js server | client HOST:PORT'); process.exit(2); }
