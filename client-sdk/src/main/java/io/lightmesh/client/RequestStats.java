package io.lightmesh.client;

/**
 * Where the time of one request went inside the mesh, as the server measured it.
 *
 * @param queueMicros    from admission by the router until a prefill worker took the request
 * @param prefillMicros  the prefill forward pass
 * @param transferMicros shipping the sequence state from prefill to decode
 * @param stateBytes     bytes of sequence state moved from prefill to decode
 * @param decodeWorker   the decode worker that generated the tokens ({@code ""} when not reported)
 * @param resumes        times the request was resumed on another decode worker
 */
public record RequestStats(long queueMicros, long prefillMicros, long transferMicros, long stateBytes,
                           String decodeWorker, int resumes) {
    /** Nothing measured. */
    public static final RequestStats NONE = new RequestStats(0, 0, 0, 0, "", 0);
}
