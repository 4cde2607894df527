package io.lightmesh.router.placement;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.List;

/**
 * What {@code GET /admin/placement} answers: the published placement with the window's loads.
 *
 * @param version         the published PlacementMap.version (0 before the first)
 * @param windowS         the sliding window the loads are measured over, seconds
 * @param imbalance       max / mean of the shard loads below
 * @param imbalanceStatic what the same loads would give under the round-robin placement over as many shards
 * @param desiredShards   shards the load needs (lightmesh.expert.shards.desired)
 */
public record PlacementView(long version, double windowS, double imbalance, double imbalanceStatic, int desiredShards,
                            List<ShardView> shards, List<ExpertView> experts) {

    /** @param experts [layer, expert] pairs held; @param load tokens/s: its share of its experts' load (replicas split evenly) */
    public record ShardView(String id, String address, List<int[]> experts, double load) {}

    /** @param load tokens/s routed to (layer, expert); @param replicas ids of the shards holding it */
    public record ExpertView(int layer, int expert, double load, List<String> replicas) {}

    public static final PlacementView EMPTY = new PlacementView(0, 0, 1, 1, 0, List.of(), List.of());

    private static final ObjectMapper JSON = new ObjectMapper();

    /** The JSON shape: {"version", "window_s", "imbalance", "imbalance_static", "shards": [...], "experts": [...]}. */
    public String toJson() {
        ObjectNode root = JSON.createObjectNode();
        root.put("version", version);
        root.put("window_s", windowS);
        root.put("imbalance", round(imbalance));
        root.put("imbalance_static", round(imbalanceStatic));
        ArrayNode ss = root.putArray("shards");
        for (ShardView s : shards) {
            ObjectNode o = ss.addObject();
            o.put("id", s.id());
            o.put("address", s.address());
            ArrayNode ex = o.putArray("experts");
            for (int[] p : s.experts()) ex.addArray().add(p[0]).add(p[1]);
            o.put("load", round(s.load()));
        }
        ArrayNode es = root.putArray("experts");
        for (ExpertView e : experts) {
            ObjectNode o = es.addObject();
            o.put("layer", e.layer());
            o.put("expert", e.expert());
            o.put("load", round(e.load()));
            ArrayNode r = o.putArray("replicas");
            e.replicas().forEach(r::add);
        }
        try {
            return JSON.writeValueAsString(root);
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException(e); // a tree of plain values always serialises
        }
    }

    private static double round(double x) { return Math.round(x * 1000) / 1000.0; }
}
