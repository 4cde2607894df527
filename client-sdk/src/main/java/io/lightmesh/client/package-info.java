/**
 * The Java client of a LightMesh server (a mesh router or a single-process server), over its public gRPC API
 * ({@code lightmesh.v1.Inference}).
 *
 * <p>Start with {@link io.lightmesh.client.LightMeshClient#builder()}. Requests are built with
 * {@link io.lightmesh.client.GenerationRequest}: raw text, token ids, or a chat of
 * {@link io.lightmesh.client.ChatMessage}s with {@link io.lightmesh.client.Tool}s. Answers come whole
 * ({@link io.lightmesh.client.Completion}) or as a stream of {@link io.lightmesh.client.Delta}s; chat answers carry the
 * model's reasoning and its {@link io.lightmesh.client.ToolCall}s apart from the answer text. Failures are
 * {@link io.lightmesh.client.LightMeshException}s carrying the gRPC status code.
 *
 * <p>{@code io.lightmesh.client.testing.FakeLightMesh}, an in-process fake server for testing code that uses this
 * client, is in the artifact {@code lightmesh-client-sdk-testing}; {@code io.lightmesh.client.internal} is not API.
 */
package io.lightmesh.client;
