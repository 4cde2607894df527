package io.lightmesh.engine.tokenizer;

/**
 * Lossy UTF-8 decoding that can be fed in pieces. Each maximal invalid subpart becomes one U+FFFD (the Unicode
 * "best practice" that Rust's String::from_utf8_lossy, and so HF tokenizers, follow); a sequence that is still
 * a valid prefix when the input runs out is held until more bytes arrive or {@link #finish} is called.
 */
final class Utf8 {
    private static final char REPLACEMENT = '\uFFFD';

    /** Bytes of the incomplete sequence being held (at most 3). */
    private final byte[] pending = new byte[4];
    private int pendingLength;

    /** Decodes a whole byte array. */
    static String decode(byte[] bytes, int length) {
        Utf8 d = new Utf8();
        StringBuilder sb = new StringBuilder(length);
        d.feed(bytes, 0, length, sb);
        d.finish(sb);
        return sb.toString();
    }

    boolean hasPending() {
        return pendingLength > 0;
    }

    /** Appends to {@code out} every character completed by {@code bytes[off, off+len)}. */
    void feed(byte[] bytes, int off, int len, StringBuilder out) {
        for (int i = off; i < off + len; i++) accept(bytes[i] & 0xFF, out);
    }

    /** Ends the input: a held incomplete sequence becomes one U+FFFD. */
    void finish(StringBuilder out) {
        if (pendingLength > 0) {
            out.append(REPLACEMENT);
            pendingLength = 0;
        }
    }

    private void accept(int b, StringBuilder out) {
        if (pendingLength == 0) {
            if (b < 0x80) {
                out.append((char) b);
            } else if (expectedLength(b) == 0) {
                out.append(REPLACEMENT);
            } else {
                pending[pendingLength++] = (byte) b;
            }
            return;
        }
        int lead = pending[0] & 0xFF;
        if (!validContinuation(lead, pendingLength, b)) {
            // The held bytes are a maximal invalid subpart; b starts afresh.
            out.append(REPLACEMENT);
            pendingLength = 0;
            accept(b, out);
            return;
        }
        pending[pendingLength++] = (byte) b;
        if (pendingLength == expectedLength(lead)) {
            out.appendCodePoint(codePoint(pendingLength));
            pendingLength = 0;
        }
    }

    /** Length of the sequence a lead byte starts, 0 if it cannot start one. */
    private static int expectedLength(int lead) {
        if (lead >= 0xC2 && lead <= 0xDF) return 2;
        if (lead >= 0xE0 && lead <= 0xEF) return 3;
        if (lead >= 0xF0 && lead <= 0xF4) return 4;
        return 0;
    }

    /** Whether b may follow at index {@code index} (>= 1) of a sequence led by {@code lead} (Unicode table 3-7). */
    private static boolean validContinuation(int lead, int index, int b) {
        if (index == 1) {
            return switch (lead) {
                case 0xE0 -> b >= 0xA0 && b <= 0xBF;
                case 0xED -> b >= 0x80 && b <= 0x9F;
                case 0xF0 -> b >= 0x90 && b <= 0xBF;
                case 0xF4 -> b >= 0x80 && b <= 0x8F;
                default -> b >= 0x80 && b <= 0xBF;
            };
        }
        return b >= 0x80 && b <= 0xBF;
    }

    private int codePoint(int n) {
        int lead = pending[0] & 0xFF;
        int cp = switch (n) {
            case 2 -> lead & 0x1F;
            case 3 -> lead & 0x0F;
            default -> lead & 0x07;
        };
        for (int i = 1; i < n; i++) cp = (cp << 6) | (pending[i] & 0x3F);
        return cp;
    }
}
