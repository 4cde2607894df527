package io.lightmesh.prefill;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.generate.PromptLogprobs;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.prefix.CachedPrefill;
import io.lightmesh.mesh.Specs;
import io.lightmesh.proto.v1.GenerationSpec;
import io.opentelemetry.context.Scope;

import java.util.List;
import java.util.logging.Logger;

/**
 * The forward pass of a prefill batch: every open job's context through the same forward steps (the engine's batched
 * prefill, long prompts cut into steps of {@code batchTokens}), each from the longest prefix of it found in the prefix
 * cache ({@link CachedPrefill}); a job that asks for its prompt's log-probabilities alone ({@link PromptLogprobs}).
 * Leaves each job its state and last logits, or its verdict when it cannot be prefilled.
 */
final class PrefillPass {
    private static final Logger LOG = Logger.getLogger(PrefillPass.class.getName());

    private final MiniMaxModel model;
    private final CachedPrefill cachedPrefill;
    private final int batchTokens;
    private final StateShipper shipper;
    private final PrefillMetrics metrics;

    /** @param shipper where a job that cannot be prefilled is dropped or reported unavailable */
    PrefillPass(MiniMaxModel model, CachedPrefill cachedPrefill, int batchTokens, StateShipper shipper, PrefillMetrics metrics) {
        this.model = model;
        this.cachedPrefill = cachedPrefill;
        this.batchTokens = batchTokens;
        this.shipper = shipper;
        this.metrics = metrics;
    }

    /**
     * One batched prefill over {@code jobs} (the first job's span is current, so the expert calls of the forward pass
     * join its trace). A context the engine refuses is found by running the jobs one at a time, and dropped.
     */
    void prefill(List<PrefillJob> jobs) {
        if (jobs.isEmpty()) return;
        List<PrefillJob> scored = jobs.stream().filter(j -> Specs.promptLogprobs(j.task.getSpec()) >= 0).toList();
        if (!scored.isEmpty()) { // prompt log-probabilities need the logits of every position: one at a time
            for (PrefillJob j : scored) prefillScoring(j);
            jobs = jobs.stream().filter(j -> Specs.promptLogprobs(j.task.getSpec()) < 0).toList();
            if (jobs.isEmpty()) return;
        }
        long t0 = System.nanoTime();
        try (Scope ignored = jobs.getFirst().span.makeCurrent()) {
            List<CachedPrefill.Result> done = cachedPrefill.prefill(jobs.stream().map(j -> j.context).toList(), batchTokens);
            for (int i = 0; i < jobs.size(); i++) {
                PrefillJob j = jobs.get(i);
                j.state = done.get(i).state();
                j.logits = done.get(i).logits();
                j.cachedTokens = done.get(i).cachedTokens();
            }
        } catch (IllegalArgumentException e) {
            if (jobs.size() == 1) { shipper.drop(jobs.getFirst(), e); return; }
            for (PrefillJob j : jobs) prefill(List.of(j)); // the batch left every state untouched
            return;
        } catch (StatusRuntimeException e) {
            if (e.getStatus().getCode() == Status.Code.UNAVAILABLE) {
                // no expert shard for some (layer, expert), and no placement covering it came in time (RemoteExperts
                // waited already): fail the requests now, through their decode workers, rather than retry them
                LOG.warning("prefill of a batch of " + jobs.size() + " failed: " + e.getStatus() + "; failing its requests");
                for (PrefillJob j : jobs) shipper.unavailable(j, e.getStatus());
                return;
            }
            // anything else: every job of the batch is taken again later
            LOG.info("prefill of a batch of " + jobs.size() + " failed: " + e.getStatus());
            for (PrefillJob j : jobs) j.commit = false;
            return;
        }
        long us = (System.nanoTime() - t0) / 1000;
        metrics.batch(jobs.size());
        for (PrefillJob j : jobs) {
            j.prefillUs = us;
            metrics.prefilled(us, j.queueUs);
            j.span.setAttribute("lightmesh.context_tokens", j.context.length).setAttribute("lightmesh.cached_tokens", j.cachedTokens);
        }
    }

    /**
     * Prefill of one job that asks for its prompt's log-probabilities (raw logits at every position, the engine's
     * {@link PromptLogprobs}); a resume's context also holds generated tokens, whose scores are not the prompt's.
     */
    private void prefillScoring(PrefillJob j) {
        long t0 = System.nanoTime();
        j.state = model.newState();
        GenerationSpec spec = j.task.getSpec();
        try (Scope ignored = j.span.makeCurrent()) {
            PromptLogprobs.Result r = PromptLogprobs.prefill(model, j.state, j.context, Specs.promptLogprobs(spec));
            j.logits = r.lastLogits();
            int prompt = spec.getPromptTokensCount() - 1;
            j.promptLogprobs = r.logprobs().subList(0, prompt).stream().map(Specs::logprob).toList();
        } catch (IllegalArgumentException e) {
            shipper.drop(j, e);
            return;
        } catch (StatusRuntimeException e) {
            LOG.info("prefill of " + j.key + " failed: " + e.getStatus());
            if (e.getStatus().getCode() == Status.Code.UNAVAILABLE) shipper.unavailable(j, e.getStatus());
            else j.commit = false;
            return;
        }
        j.prefillUs = (System.nanoTime() - t0) / 1000;
        metrics.batch(1);
        metrics.prefilled(j.prefillUs, j.queueUs);
        j.span.setAttribute("lightmesh.context_tokens", j.context.length);
    }
}
