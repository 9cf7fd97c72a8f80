#!/usr/bin/python3
"""A gRPC peer built on gRPC C-core (Debian's python3-grpcio), for tests/grpc_stacks.rs.

tonic is the only gRPC implementation the other tests record; this one brings another HTTP/2
stack, HPACK encoder and protobuf library (Google's), with C-core's habits: BDP pings, trailers-only
error answers, percent-encoded grpc-message, gzip or deflate per call.

  grpc_core.py server           serves test.echo.Echo and grpc.health.v1.Health on a free loopback
                                port and prints it; then reads stdin: "down" makes the health check
                                answer NOT_SERVING, "up" SERVING, "drain" shuts the server down
                                gracefully (GOAWAY, calls running may finish within 5 s), end of
                                input stops the server.
  grpc_core.py hold HOST:PORT   makes one Unary call there, prints "ready" and keeps the
                                connection open, idle, until killed.
  grpc_core.py client HOST:PORT calls test.echo.Echo and grpc.health.v1.Health there and prints, as
                                one JSON object, what each call got back: the ground truth the test
                                holds the dissection to.

The echo service answers as tests/common/echo.rs's does, so the same client works on either
server; a Unary request whose text is "fail" is refused with INVALID_ARGUMENT, one whose text
is "slow" is answered after a second, one whose text is "nap" after 200 ms, one whose text is "details" is refused with a
google.rpc.Status in grpc-status-details-bin, one whose text is "mirror" answers the request's
"big-md" metadata as its "big-md-echo" trailer; a ServerStream request whose text is "endless" is
answered until the client cancels, one whose text is "large" with eight answers of 64 KiB.
"""
import json
import os
import sys
import time
import threading
from concurrent import futures

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

# A message the server refuses with, percent-encoded on the wire (quote, non-ASCII, newline).
FAIL_DETAILS = "refused 'fail': caf\u00e9 \u2014 50% off\nsecond line"
TRAILER_BIN = b"\x00\x01\xfe\xff"


def echo_types():
    """EchoRequest and EchoReply of tests/data/echo.proto, built from a descriptor at run time
    (no protoc here), encoded by Google's protobuf library."""
    fdp = descriptor_pb2.FileDescriptorProto(name="core_echo.proto", package="test.echo", syntax="proto3")
    f = descriptor_pb2.FieldDescriptorProto
    for name in ("EchoRequest", "EchoReply"):
        m = fdp.message_type.add(name=name)
        m.field.add(name="text", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
        m.field.add(name="payload", number=2, type=f.TYPE_BYTES, label=f.LABEL_OPTIONAL)
        m.field.add(name="seq", number=3, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    factory = getattr(message_factory, "GetMessageClass", None)
    if factory is None:
        factory = message_factory.MessageFactory(pool).GetPrototype
    return tuple(factory(pool.FindMessageTypeByName(f"test.echo.{n}")) for n in ("EchoRequest", "EchoReply"))


EchoRequest, EchoReply = echo_types()


def rich_status():
    """A google.rpc.Status with a BadRequest in its details, as richer error models send it in
    grpc-status-details-bin; encoded field by field (no generated code here)."""
    def field(number, content):
        assert len(content) < 128
        return bytes([number << 3 | 2, len(content)]) + content
    violation = field(1, b"text") + field(2, b"must not be details")
    bad_request = field(1, violation)
    detail = field(1, b"type.googleapis.com/google.rpc.BadRequest") + field(2, bad_request)
    return bytes([0x08, 3]) + field(2, b"bad field") + field(3, detail)


def big_payload():
    """1 MiB in a pattern the other scripts and the tests make alike."""
    return bytes((i * 7) % 251 for i in range(1 << 20))


def health_request(service):
    data = service.encode()
    return (b"\x0a" + bytes([len(data)]) + data) if data else b""


def health_status(answer):
    """HealthCheckResponse.status (field 1, an enum); 0 when absent."""
    return answer[1] if len(answer) >= 2 and answer[0] == 0x08 else 0


def serve():
    serving = {"ok": True}

    def reply(req, seq):
        return EchoReply(text="echo " + req.text, payload=req.payload, seq=seq)

    def unary(raw, ctx):
        req = EchoRequest.FromString(raw)
        if req.text == "slow":
            time.sleep(1)
        if req.text == "nap":
            time.sleep(0.2)
        if req.text == "fail":
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, FAIL_DETAILS)
        if req.text == "details":
            ctx.set_trailing_metadata((("grpc-status-details-bin", rich_status()),))
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad field")
        if req.text == "mirror":
            big = dict(ctx.invocation_metadata()).get("big-md", "")
            ctx.set_trailing_metadata((("big-md-echo", big),))
            return reply(req, req.seq).SerializeToString()
        if req.text.startswith("gzip"):
            ctx.set_compression(grpc.Compression.Gzip)
        ctx.set_trailing_metadata((("checksum-bin", TRAILER_BIN), ("served-by", "c-core")))
        return reply(req, req.seq).SerializeToString()

    def server_stream(raw, ctx):
        req = EchoRequest.FromString(raw)
        # "endless": an answer every 10 ms until the client cancels; "large": eight answers of
        # 64 KiB each, more than a small window holds.
        if req.text == "large":
            for i in range(8):
                yield EchoReply(text="large", payload=bytes(65536), seq=i).SerializeToString()
            return
        count = 3 if req.text != "endless" else 1 << 30
        for i in range(count):
            if i >= 3:
                time.sleep(0.01)
            yield reply(req, i).SerializeToString()

    def client_stream(it, ctx):
        texts = [EchoRequest.FromString(r).text for r in it]
        return EchoReply(text="+".join(texts), seq=len(texts)).SerializeToString()

    def bidi(it, ctx):
        for raw in it:
            req = EchoRequest.FromString(raw)
            yield reply(req, req.seq).SerializeToString()

    def check(raw, ctx):
        service = raw[2:].decode() if raw[:1] == b"\x0a" else ""
        if service not in ("", "test.echo.Echo"):
            ctx.abort(grpc.StatusCode.NOT_FOUND, "unknown service " + service)
        return b"\x08\x01" if serving["ok"] else b"\x08\x02"

    plain = dict(request_deserializer=None, response_serializer=None)
    handlers = [
        grpc.method_handlers_generic_handler("test.echo.Echo", {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, **plain),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, **plain),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, **plain),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi, **plain),
        }),
        grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(check, **plain),
        }),
    ]
    # H2SCOPE_MAX_RECEIVE: the largest request message the server takes (C-core's default: 4 MiB);
    # H2SCOPE_MAX_STREAMS: the calls it runs at once on a connection (SETTINGS_MAX_CONCURRENT_STREAMS);
    # H2SCOPE_MAX_METADATA: the largest header list it takes (C-core's default: 8 KiB).
    options = []
    if os.environ.get("H2SCOPE_MAX_RECEIVE"):
        options.append(("grpc.max_receive_message_length", int(os.environ["H2SCOPE_MAX_RECEIVE"])))
    if os.environ.get("H2SCOPE_MAX_STREAMS"):
        options.append(("grpc.max_concurrent_streams", int(os.environ["H2SCOPE_MAX_STREAMS"])))
    if os.environ.get("H2SCOPE_MAX_METADATA"):
        options.append(("grpc.max_metadata_size", int(os.environ["H2SCOPE_MAX_METADATA"])))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=handlers, options=options)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    for line in sys.stdin:
        if line.strip() == "drain":
            server.stop(5)
        else:
            serving["ok"] = line.strip() != "down"
    server.stop(0)


def call(results, path, fn, encoding=None, timeout=10):
    """Runs one call; notes its status, details, trailing metadata and answers, the encoding its
    requests were sent in (gzip, deflate, or none), and the deadline it was given (seconds)."""
    entry = {"path": path, "encoding": encoding, "timeout": timeout}
    try:
        answers, trailers = fn()
        entry["code"] = 0
        entry["details"] = None
    except grpc.RpcError as e:
        answers, trailers = [], e.trailing_metadata() or ()
        entry["code"] = e.code().value[0]
        entry["details"] = e.details()
    entry["answers"] = answers
    entry["trailers"] = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in trailers}
    results.append(entry)


def client(target):
    results = []
    ser = dict(request_serializer=None, response_deserializer=None)
    plain = grpc.insecure_channel(target)
    gzipped = grpc.insecure_channel(target, compression=grpc.Compression.Gzip)
    deflated = grpc.insecure_channel(target, compression=grpc.Compression.Deflate)

    def echo_json(raw):
        m = EchoReply.FromString(raw)
        return {"text": m.text, "payload": m.payload.hex(), "seq": m.seq}

    def unary(ch, text, seq, payload=b"", metadata=None, encoding=None):
        def run():
            stub = ch.unary_unary("/test.echo.Echo/Unary", **ser)
            raw, c = stub.with_call(EchoRequest(text=text, seq=seq, payload=payload).SerializeToString(),
                                    timeout=10, metadata=metadata)
            return [echo_json(raw)], c.trailing_metadata() or ()
        call(results, "/test.echo.Echo/Unary", run, encoding)

    def streams(ch):
        def server_stream():
            it = ch.unary_stream("/test.echo.Echo/ServerStream", **ser)(
                EchoRequest(text="fan", seq=7).SerializeToString(), timeout=10)
            return [echo_json(r) for r in it], it.trailing_metadata() or ()
        call(results, "/test.echo.Echo/ServerStream", server_stream)

        def client_stream():
            reqs = iter([EchoRequest(text=t, seq=i).SerializeToString() for i, t in enumerate(("a", "b", "c"))])
            raw, c = ch.stream_unary("/test.echo.Echo/ClientStream", **ser).with_call(reqs, timeout=10)
            return [echo_json(raw)], c.trailing_metadata() or ()
        call(results, "/test.echo.Echo/ClientStream", client_stream)

        def bidi():
            reqs = iter([EchoRequest(text=f"ping {i}", seq=i).SerializeToString() for i in range(4)])
            it = ch.stream_stream("/test.echo.Echo/Bidi", **ser)(reqs, timeout=10)
            return [echo_json(r) for r in it], it.trailing_metadata() or ()
        call(results, "/test.echo.Echo/Bidi", bidi)

    def health(ch, service):
        def run():
            raw, c = ch.unary_unary("/grpc.health.v1.Health/Check", **ser).with_call(
                health_request(service), timeout=10)
            return [{"status": health_status(raw)}], c.trailing_metadata() or ()
        call(results, "/grpc.health.v1.Health/Check", run)

    unary(plain, "hello", 1, metadata=(("tenant", "blue"), ("trace-bin", b"\x01\x02\x03")))
    unary(plain, "fail", 2)
    unary(gzipped, "gzip " + "z" * 300, 3, payload=bytes(range(256)), encoding="gzip")
    unary(deflated, "deflate " + "d" * 300, 6, payload=bytes(range(256)), encoding="deflate")
    streams(plain)
    health(plain, "")
    health(plain, "no.such.Service")
    # A message sixteen times the initial window each way: many frames, flow control at work.
    unary(plain, "big", 5, payload=big_payload())

    # A deadline shorter than the answer takes (on the C-core server): the client gives up.
    def slow():
        raw, c = plain.unary_unary("/test.echo.Echo/Unary", **ser).with_call(
            EchoRequest(text="slow", seq=4).SerializeToString(), timeout=0.3)
        return [echo_json(raw)], c.trailing_metadata() or ()
    call(results, "/test.echo.Echo/Unary", slow, timeout=0.3)
    plain.close()
    gzipped.close()
    deflated.close()
    json.dump(results, sys.stdout)
    print()


def hold(target):
    ch = grpc.insecure_channel(target)
    ch.unary_unary("/test.echo.Echo/Unary", request_serializer=None, response_deserializer=None)(
        EchoRequest(text="hello", seq=1).SerializeToString(), timeout=10)
    print("ready", flush=True)
    time.sleep(60)


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        serve()
    elif sys.argv[1:2] == ["hold"] and len(sys.argv) == 3:
        hold(sys.argv[2])
    elif sys.argv[1:2] == ["client"] and len(sys.argv) == 3:
        client(sys.argv[2])
    else:
        sys.exit(__doc__)
