package io.lightmesh.router.placement;

import io.vertx.ext.web.Router;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.function.Supplier;

/**
 * {@code GET /admin/placement} on the router's HTTP port: the placement controller's {@link PlacementView} as JSON.
 * With an API key configured it wants {@code Authorization: Bearer <key>} (401 otherwise, as the OpenAI API);
 * 404 when the mesh has no placement controller (experts in-process).
 */
public final class AdminPlacementRoute {
    public static final String PATH = "/admin/placement";

    private AdminPlacementRoute() {}

    /** @param view null: no controller in this router */
    public static void mount(Router router, Supplier<PlacementView> view, String apiKey) {
        byte[] expected = apiKey == null || apiKey.isEmpty() ? null : ("Bearer " + apiKey).getBytes(StandardCharsets.UTF_8);
        router.get(PATH).handler(ctx -> {
            if (expected != null) {
                String given = ctx.request().getHeader("Authorization");
                if (given == null || !MessageDigest.isEqual(expected, given.getBytes(StandardCharsets.UTF_8))) {
                    ctx.response().setStatusCode(401).putHeader("Content-Type", "application/json")
                            .end("{\"error\":{\"message\":\"" + (given == null ? "missing API key: send 'Authorization: Bearer <key>'"
                                    : "incorrect API key") + "\",\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}");
                    return;
                }
            }
            if (view == null) {
                ctx.response().setStatusCode(404).putHeader("Content-Type", "application/json")
                        .end("{\"error\":{\"message\":\"this mesh has no expert placement controller (experts in-process or none configured)\",\"type\":\"invalid_request_error\",\"code\":\"not_found\"}}");
                return;
            }
            ctx.response().putHeader("Content-Type", "application/json").end(view.get().toJson());
        });
    }
}
