package io.lightmesh.decode.app;

import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.proto.v1.WorkerInfo;
import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.Readiness;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Provider;

/** Readiness: the worker is up (model loaded, experts placed); its load in the data, as Worker.Describe tells the router. */
@Readiness
@ApplicationScoped
public class DecodeHealth implements HealthCheck {
    private final DeferredServices services;
    private final Provider<DecodeNode> node;

    DecodeHealth(DeferredServices services, Provider<DecodeNode> node) {
        this.services = services;
        this.node = node;
    }

    @Override
    public HealthCheckResponse call() {
        if (!services.ready()) return HealthCheckResponse.named("decode").down().withData("detail", "starting").build();
        WorkerInfo w = node.get().worker().workerInfo();
        // the engine's path, as Worker.Describe's fields 30-33 say it
        return HealthCheckResponse.named("decode").up().withData("id", w.getWorkerId()).withData("address", w.getAddress())
                .withData("active_sequences", w.getLoad().getActiveSequences())
                .withData("state_bytes_used", w.getLoad().getStateBytesUsed())
                .withData("state_bytes_budget", w.getLoad().getStateBytesBudget())
                .withData("decode_path", w.getDecodePath()).withData("prefill_path", w.getPrefillPath())
                .withData("experts", w.getRemoteExperts() ? "remote" : "local")
                .withData("micro_batching", w.getMicroBatching()).withData("backend", w.getBackend()).build();
    }
}
