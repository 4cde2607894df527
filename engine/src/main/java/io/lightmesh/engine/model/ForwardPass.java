package io.lightmesh.engine.model;

import java.util.List;

/**
 * The model's forward pass, written once: every path (the host's arrays, the device with or without its fused
 * kernels, experts in-process or remote, decode and prefill, one micro-batch or two) runs this loop over its own
 * {@link LayerOps}. Per layer, postnorm (the residual carries the normalised input):
 * <pre>
 *   x1 = RMSNorm_in(h);    h1 = a_attn * x1 + b_attn * Attn(x1)
 *   x2 = RMSNorm_post(h1); h2 = a_mlp  * x2 + b_mlp  * MoE(x2)
 * </pre>
 * With two micro-batches (remote experts, MegaScale-Infer's ping-pong) the loop interleaves them: micro-batch A's
 * experts of layer l are computed remotely while B's attention of layer l runs, and B's while A's attention of
 * layer l+1 runs. With one, it is the plain layer order.
 */
final class ForwardPass {
    private final DecoderLayer[] layers;

    ForwardPass(DecoderLayer[] layers) { this.layers = layers; }

    DecoderLayer[] layers() { return layers; }

    /** Every layer over the micro-batches; afterwards each one's x [n, h] is final-normed, its states advanced. */
    void run(List<? extends LayerOps> parts) {
        int L = layers.length;
        for (LayerOps p : parts) p.embed();                       // x = RMSNorm_in0(embed[ids]): [n, h]
        for (int l = 0; l < L; l++) {
            DecoderLayer layer = layers[l];
            for (LayerOps p : parts) {
                if (l > 0) p.finishMoe(l - 1, layers[l - 1]);    // x = RMSNorm_in(a_mlp x + b_mlp y)
                if (layer.lightning != null) p.lightning(l, layer.lightning); // o [n, H*D]
                else p.softmax(l, layer.softmax);
                p.outputAndRoute(l, layer);                       // x = RMSNorm_post(a_attn x + b_attn o W_o^T); top-k
                p.startMoe(l, layer);                             // y = sum_k w_k Expert_k(x): [n, h]
            }
        }
        for (LayerOps p : parts) p.finishMoe(L - 1, layers[L - 1]); // x = RMSNorm_final(a_mlp x + b_mlp y)
    }
}
