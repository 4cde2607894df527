package io.lightmesh.engine.tokenizer;

/**
 * Turns generated token ids into text as they arrive. A token may end in the middle of a multi-byte UTF-8
 * character (byte-level BPE splits emoji and CJK freely); those bytes are held until the character completes,
 * and become U+FFFD only once they can no longer start a valid character. The concatenation of all outputs and
 * {@link #flush()} equals {@link Tokenizer#decode} of all ids. Not thread-safe: one per sequence.
 */
public final class StreamingDecoder {
    private final Tokenizer tokenizer;
    private final boolean skipSpecial;
    private final Utf8 utf8 = new Utf8();
    private final StringBuilder out = new StringBuilder();

    public StreamingDecoder(Tokenizer tokenizer) {
        this(tokenizer, false);
    }

    /** With {@code skipSpecial}, special tokens produce no text (as {@link Tokenizer#decode(int[], boolean)}). */
    public StreamingDecoder(Tokenizer tokenizer, boolean skipSpecial) {
        this.tokenizer = tokenizer;
        this.skipSpecial = skipSpecial;
    }

    /** Feeds one token; returns the text it completes (possibly empty). */
    public String accept(int id) {
        if (skipSpecial && tokenizer.isSpecial(id)) return "";
        byte[] b = tokenizer.tokenBytes(id);
        out.setLength(0);
        utf8.feed(b, 0, b.length, out);
        return out.toString();
    }

    /** Whether bytes of an incomplete character are being held. */
    public boolean hasPending() {
        return utf8.hasPending();
    }

    /** Ends the stream: held bytes of an incomplete character become U+FFFD. */
    public String flush() {
        out.setLength(0);
        utf8.finish(out);
        return out.toString();
    }
}
