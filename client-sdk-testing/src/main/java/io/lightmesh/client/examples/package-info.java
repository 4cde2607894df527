/** A runnable example of the client SDK: {@link io.lightmesh.client.examples.ChatExample}. */
package io.lightmesh.client.examples;
