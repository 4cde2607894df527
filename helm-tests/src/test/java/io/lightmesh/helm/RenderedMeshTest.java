package io.lightmesh.helm;

/** {@link RenderedMesh} as the chart installs it by default: the router runs the placement controller. */
class RenderedMeshTest extends RenderedMesh {
    @Override boolean controller() { return true; }
}
