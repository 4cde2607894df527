package io.lightmesh.client.internal;

import io.lightmesh.client.Delta;
import io.lightmesh.client.LightMeshException;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;

import java.util.concurrent.Flow;
import java.util.function.Function;

/**
 * A cold publisher of a generation's deltas: each subscription runs the request once. Demand is passed to the server
 * as gRPC flow control; cancelling the subscription cancels the call on the server.
 */
public final class DeltaPublisher implements Flow.Publisher<Delta> {
    private final Function<StreamCall.Listener<GenerateChunk>, StreamCall<GenerateRequest, GenerateChunk>> calls;

    /** A publisher whose subscriptions each run a call made by {@code calls} for their listener. */
    public DeltaPublisher(Function<StreamCall.Listener<GenerateChunk>, StreamCall<GenerateRequest, GenerateChunk>> calls) {
        this.calls = calls;
    }

    @Override
    public void subscribe(Flow.Subscriber<? super Delta> subscriber) {
        java.util.Objects.requireNonNull(subscriber, "subscriber");
        new Subscription(subscriber).begin();
    }

    private final class Subscription implements Flow.Subscription {
        private final Flow.Subscriber<? super Delta> subscriber;
        private final StreamCall<GenerateRequest, GenerateChunk> call;
        private volatile boolean stopped;   // cancelled, or failed on a bad request(n)

        Subscription(Flow.Subscriber<? super Delta> subscriber) {
            this.subscriber = subscriber;
            this.call = calls.apply(new StreamCall.Listener<>() {
                @Override
                public void onMessage(GenerateChunk c) {
                    if (!stopped) subscriber.onNext(Protos.fromProto(c));
                }

                @Override
                public void onClose(LightMeshException error) {
                    if (stopped) return;
                    stopped = true;
                    if (error == null) subscriber.onComplete();
                    else subscriber.onError(error);
                }
            });
        }

        void begin() {
            subscriber.onSubscribe(this);
            call.start();
        }

        @Override
        public void request(long n) {
            if (stopped) return;
            if (n <= 0) {   // reactive-streams rule 3.9
                stopped = true;
                call.cancel("bad demand");
                subscriber.onError(new IllegalArgumentException("request(n) needs n > 0, got " + n));
                return;
            }
            call.request(n);
        }

        @Override
        public void cancel() {
            stopped = true;
            call.cancel("cancelled by the subscriber");
        }
    }
}
