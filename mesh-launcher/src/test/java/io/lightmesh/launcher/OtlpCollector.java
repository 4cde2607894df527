package io.lightmesh.launcher;

import com.google.protobuf.CodedInputStream;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.zip.GZIPInputStream;

/**
 * An OTLP/HTTP receiver for tests of services in other processes: keeps the spans of every
 * {@code POST /v1/traces} (protobuf ExportTraceServiceRequest, gzip or not) as (service.name, trace id, span name),
 * and answers every other signal 200 without reading it.
 */
final class OtlpCollector implements AutoCloseable {
    record Span(String service, String traceId, String name) {}

    private final HttpServer server;
    final List<Span> spans = new CopyOnWriteArrayList<>();

    OtlpCollector() throws IOException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/", exchange -> {
            try (InputStream body = exchange.getRequestBody()) {
                InputStream in = "gzip".equalsIgnoreCase(exchange.getRequestHeaders().getFirst("Content-Encoding"))
                        ? new GZIPInputStream(body) : body;
                byte[] bytes = in.readAllBytes();
                if (exchange.getRequestURI().getPath().endsWith("/v1/traces")) request(bytes);
                exchange.getResponseHeaders().add("Content-Type", "application/x-protobuf");
                exchange.sendResponseHeaders(200, -1);   // an empty Export*ServiceResponse
            } catch (RuntimeException e) {
                exchange.sendResponseHeaders(400, -1);
            } finally {
                exchange.close();
            }
        });
        server.start();
    }

    String endpoint() { return "http://127.0.0.1:" + server.getAddress().getPort(); }

    // ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
    private void request(byte[] bytes) throws IOException {
        CodedInputStream in = CodedInputStream.newInstance(bytes);
        for (int tag; (tag = in.readTag()) != 0; ) {
            if (tag >>> 3 == 1) resourceSpans(in.readBytes().toByteArray());
            else in.skipField(tag);
        }
    }

    // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
    private void resourceSpans(byte[] bytes) throws IOException {
        CodedInputStream in = CodedInputStream.newInstance(bytes);
        String service = "";
        List<byte[]> scopes = new java.util.ArrayList<>();
        for (int tag; (tag = in.readTag()) != 0; ) {
            switch (tag >>> 3) {
                case 1 -> service = serviceName(in.readBytes().toByteArray());
                case 2 -> scopes.add(in.readBytes().toByteArray());
                default -> in.skipField(tag);
            }
        }
        for (byte[] s : scopes) scopeSpans(service, s);
    }

    // Resource { repeated KeyValue attributes = 1; }  KeyValue { string key = 1; AnyValue value = 2; }  AnyValue { string string_value = 1; }
    private static String serviceName(byte[] resource) throws IOException {
        CodedInputStream in = CodedInputStream.newInstance(resource);
        for (int tag; (tag = in.readTag()) != 0; ) {
            if (tag >>> 3 != 1) { in.skipField(tag); continue; }
            CodedInputStream kv = CodedInputStream.newInstance(in.readBytes().toByteArray());
            String key = null, value = null;
            for (int t; (t = kv.readTag()) != 0; ) {
                if (t >>> 3 == 1) key = kv.readString();
                else if (t >>> 3 == 2) {
                    CodedInputStream any = CodedInputStream.newInstance(kv.readBytes().toByteArray());
                    for (int a; (a = any.readTag()) != 0; ) {
                        if (a >>> 3 == 1) value = any.readString();
                        else any.skipField(a);
                    }
                } else kv.skipField(t);
            }
            if ("service.name".equals(key)) return value;
        }
        return "";
    }

    // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }  Span { bytes trace_id = 1; string name = 5; }
    private void scopeSpans(String service, byte[] bytes) throws IOException {
        CodedInputStream in = CodedInputStream.newInstance(bytes);
        for (int tag; (tag = in.readTag()) != 0; ) {
            if (tag >>> 3 != 2) { in.skipField(tag); continue; }
            CodedInputStream span = CodedInputStream.newInstance(in.readBytes().toByteArray());
            String trace = "", name = "";
            for (int t; (t = span.readTag()) != 0; ) {
                switch (t >>> 3) {
                    case 1 -> trace = HexFormat.of().formatHex(span.readBytes().toByteArray());
                    case 5 -> name = span.readString();
                    default -> span.skipField(t);
                }
            }
            spans.add(new Span(service, trace, name));
        }
    }

    @Override
    public void close() { server.stop(0); }
}
