/**
 * Test doubles for code that uses the client SDK: {@link io.lightmesh.client.testing.FakeLightMesh}, a LightMesh server
 * answering with scripted {@link io.lightmesh.client.testing.FakeReply replies}, in-process or on a local port.
 */
package io.lightmesh.client.testing;
