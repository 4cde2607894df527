package io.lightmesh.engine.tokenizer;

/**
 * GPT-2's reversible map between the 256 byte values and printable code points: printable Latin-1 bytes map to
 * themselves, the other 68 to U+0100.. in byte order (so space becomes U+0120 'Ġ', newline U+010A 'Ċ').
 * Every mapped code point is below U+0144, so both directions are plain arrays.
 */
final class ByteLevel {
    /** byte value (0..255) -> code point. */
    static final char[] BYTE_TO_CHAR = new char[256];
    /** code point -> byte value, or -1 where the code point is not the image of a byte. (0x144) */
    static final int[] CHAR_TO_BYTE = new int[0x144];

    static {
        boolean[] printable = new boolean[256];
        for (int b = '!'; b <= '~'; b++) printable[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++) BYTE_TO_CHAR[b] = printable[b] ? (char) b : (char) (256 + n++);
        java.util.Arrays.fill(CHAR_TO_BYTE, -1);
        for (int b = 0; b < 256; b++) CHAR_TO_BYTE[BYTE_TO_CHAR[b]] = b;
    }

    private ByteLevel() {}

    /** The UTF-8 bytes of {@code s}, each written as its mapped code point. */
    static String encode(String s) {
        byte[] utf8 = s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        char[] out = new char[utf8.length];
        for (int i = 0; i < utf8.length; i++) out[i] = BYTE_TO_CHAR[utf8[i] & 0xFF];
        return new String(out);
    }

    /**
     * The bytes a token stands for, as HF's ByteLevel decoder computes them: the mapped bytes when every char of
     * the token is the image of a byte, else the token's own UTF-8 (added tokens such as "hello world").
     */
    static byte[] tokenBytes(String token) {
        byte[] out = new byte[token.length()];
        for (int i = 0; i < token.length(); i++) {
            char c = token.charAt(i);
            int b = c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
            if (b < 0) return token.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            out[i] = (byte) b;
        }
        return out;
    }
}
