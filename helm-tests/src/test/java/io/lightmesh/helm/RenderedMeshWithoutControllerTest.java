package io.lightmesh.helm;

/**
 * {@link RenderedMesh} with placement.controller=false (several routers): every worker discovers the expert shards
 * itself (DiscoveredPlacement over the headless Service) and routes by what each holds.
 */
class RenderedMeshWithoutControllerTest extends RenderedMesh {
    @Override boolean controller() { return false; }
}
