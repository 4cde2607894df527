package io.lightmesh.cli;

import io.lightmesh.engine.backend.Backends;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Path;

/** The options every model command takes: which checkpoint, on which backend. */
final class ModelOptions {
    @Option(names = "--model", paramLabel = "DIR",
            description = "A checkpoint directory (config.json + safetensors [+ tokenizer.json]); default: the built-in demo model.")
    Path model;

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "auto",
            description = "auto | reference | vector | opencl (default: ${DEFAULT-VALUE}).")
    String backend;

    LoadedModel open() throws IOException {
        return LoadedModel.open(model != null ? model : DemoModel.path(), Backends.create(backend));
    }
}
