package io.lightmesh.engine.tokenizer;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Finds added tokens in text before the pre-tokenizer sees it, as HF's AddedVocabulary does: leftmost match first,
 * the longest one at that position, without overlap. {@code single_word} tokens only match between non-word
 * characters; {@code lstrip}/{@code rstrip} tokens swallow the whitespace beside them.
 */
final class AddedTokens {
    /** One entry of tokenizer.json's added_tokens. */
    record AddedToken(int id, String content, boolean special, boolean singleWord, boolean lstrip, boolean rstrip,
                      boolean normalized) {}

    /** Receives the text between matches and the matches themselves, in order. */
    interface Sink {
        void text(String segment);

        void token(AddedToken token);
    }

    private static final class Node {
        final Map<Character, Node> children = new HashMap<>(4);
        AddedToken token;
    }

    private final Node root = new Node();
    private final boolean[] firstChars = new boolean[65536];
    private final boolean empty;

    AddedTokens(List<AddedToken> tokens) {
        for (AddedToken t : tokens) {
            if (t.content().isEmpty()) continue;
            Node n = root;
            for (int i = 0; i < t.content().length(); i++) n = n.children.computeIfAbsent(t.content().charAt(i), k -> new Node());
            n.token = t;
            firstChars[t.content().charAt(0)] = true;
        }
        empty = root.children.isEmpty();
    }

    /**
     * Splits {@code text} into plain segments and added tokens. Special tokens are only matched when
     * {@code matchSpecial}.
     */
    void split(String text, boolean matchSpecial, Sink sink) {
        if (empty) {
            if (!text.isEmpty()) sink.text(text);
            return;
        }
        int emitted = 0; // text before this offset has been handed to the sink
        int i = 0;
        int n = text.length();
        while (i < n) {
            if (!firstChars[text.charAt(i)]) {
                i++;
                continue;
            }
            AddedToken match = longestAt(text, i, matchSpecial);
            if (match == null) {
                i++;
                continue;
            }
            int start = i;
            int stop = i + match.content().length();
            if (match.singleWord() && (start > 0 && isWordChar(text.codePointBefore(start))
                    || stop < n && isWordChar(text.codePointAt(stop)))) {
                i = stop; // HF does not look for another match inside a rejected one
                continue;
            }
            if (match.lstrip()) {
                while (start > emitted && isWhitespace(text.charAt(start - 1))) start--;
            }
            if (match.rstrip()) {
                while (stop < n && isWhitespace(text.charAt(stop))) stop++;
            }
            if (emitted < start) sink.text(text.substring(emitted, start));
            sink.token(match);
            emitted = stop;
            i = stop;
        }
        if (emitted < n) sink.text(text.substring(emitted));
    }

    private AddedToken longestAt(String text, int from, boolean matchSpecial) {
        Node node = root;
        AddedToken best = null;
        for (int j = from; j < text.length(); j++) {
            node = node.children.get(text.charAt(j));
            if (node == null) break;
            if (node.token != null && (matchSpecial || !node.token.special())) best = node.token;
        }
        return best;
    }

    /** Rust's char::is_alphanumeric, plus '_'. */
    private static boolean isWordChar(int cp) {
        if (cp == '_' || Character.isAlphabetic(cp)) return true;
        int t = Character.getType(cp);
        return t == Character.DECIMAL_DIGIT_NUMBER || t == Character.LETTER_NUMBER || t == Character.OTHER_NUMBER;
    }

    /** The Unicode White_Space property (Rust's char::is_whitespace); Java's isWhitespace differs on NBSP and U+001C..1F. */
    static boolean isWhitespace(char c) {
        return c >= 0x09 && c <= 0x0D || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680
                || c >= 0x2000 && c <= 0x200A || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
    }
}
