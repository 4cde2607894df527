/** Implementation of the client SDK: conversions to and from the protobuf messages, retrying calls. Not API. */
package io.lightmesh.client.internal;
