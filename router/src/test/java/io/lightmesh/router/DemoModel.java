package io.lightmesh.router;

import io.lightmesh.engine.config.ConfigLoader;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tokenizer.Tokenizer;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;

/** The demo model's shape and tokenizer (models/demo), all a {@link RequestValidator} needs: no weights, no Kafka. */
final class DemoModel {
    static final ModelConfig CONFIG;
    static final Tokenizer TOKENIZER;

    static {
        try {
            CONFIG = ConfigLoader.load(Path.of("../models/demo/config.json"));
            TOKENIZER = Tokenizer.load(Path.of("../models/demo/tokenizer.json"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private DemoModel() {}

    static RequestValidator validator(int maxPromptTokens, RequestLimits limits) {
        return new RequestValidator(CONFIG, TOKENIZER, "demo", maxPromptTokens, 256, limits);
    }
}
