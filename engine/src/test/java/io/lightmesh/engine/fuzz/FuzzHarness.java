package io.lightmesh.engine.fuzz;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What the fuzz tests of parsers of outside input share (the engine's, and mesh-common's and the router's through the
 * engine's test jar). Shape of each: the input goes to a parser, which either returns a value, that the test then
 * holds to what the rest of the code relies on, or refuses the input with an exception of a kind it documents, that
 * the test holds to saying why ({@link #parsedOrRefused}). Any other exception escapes the harness: that is the
 * finding Jazzer reports. Beside it: the files a parser reads, rewritten for every input, and the seeds a test makes
 * and commits to the corpus.
 */
public final class FuzzHarness {
    private FuzzHarness() {}

    /** One parse of the input under test. */
    @FunctionalInterface
    public interface Parse<T> {
        T parse() throws Exception;
    }

    /** A documented way to refuse input: exceptions of {@code kind}, each held to {@code check}. */
    public record Refusal<X extends Exception>(Class<X> kind, Consumer<? super X> check) {
        boolean took(Exception e) {
            if (!kind.isInstance(e)) return false;
            check.accept(kind.cast(e));
            return true;
        }
    }

    public static <X extends Exception> Refusal<X> refusal(Class<X> kind, Consumer<? super X> check) {
        return new Refusal<>(kind, check);
    }

    /** A refusal with nothing more to check: input that is not the format at all (not JSON, not a protobuf message). */
    public static <X extends Exception> Refusal<X> refusal(Class<X> kind) {
        return new Refusal<>(kind, e -> {});
    }

    /**
     * What {@code parse} returns, or null where it refused the input in one of the {@code documented} ways (the first
     * whose kind matches checks the exception). Any other exception is rethrown as it is: the finding.
     */
    public static <T> T parsedOrRefused(Parse<T> parse, Refusal<?>... documented) throws Exception {
        try {
            return parse.parse();
        } catch (Exception e) {
            for (Refusal<?> r : documented) if (r.took(e)) return null;
            throw e;
        }
    }

    /** The check of a refusal that says why in its message. */
    public static void assertSaysWhy(Exception e) {
        assertNotNull(e.getMessage(), () -> "no message: " + e);
    }

    /** The check of a refusal that names the field of the input at fault ("field x: ..."). */
    public static void assertNamesField(IllegalArgumentException e) {
        assertTrue(e.getMessage() != null && e.getMessage().contains("field "), () -> "no field named: " + e.getMessage());
    }

    /** A temporary file a fuzz test rewrites on every input, removed when the JVM exits. */
    public static Path tempFile(String prefix, String suffix) {
        try {
            Path p = Files.createTempFile(prefix, suffix);
            p.toFile().deleteOnExit();
            return p;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A temporary folder for the files of one fuzz test, removed when the JVM exits (if then empty). */
    public static Path tempDir(String prefix) {
        try {
            Path p = Files.createTempDirectory(prefix);
            p.toFile().deleteOnExit();
            return p;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * A seed the test makes, as committed in the corpus folder {@code dir} ({@code <Class>Inputs/<method>}): with
     * LIGHTMESH_WRITE_SEEDS=1 the made bytes are written there first; a seed missing from the corpus fails the test.
     */
    public static byte[] committedSeed(Path dir, String name, byte[] made) throws IOException {
        Path f = dir.resolve(name);
        if ("1".equals(System.getenv("LIGHTMESH_WRITE_SEEDS"))) {
            Files.createDirectories(dir);
            Files.write(f, made);
        }
        assertTrue(Files.exists(f), () -> "seed " + f + " committed (LIGHTMESH_WRITE_SEEDS=1 writes it)");
        return Files.readAllBytes(f);
    }
}
