package io.lightmesh.engine.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The pre-tokenizers of an HF tokenizer.json that byte-level BPE vocabularies use. Each splits or rewrites every
 * piece it is given and passes the results on, in order; empty pieces are dropped, as HF does. Pieces stream
 * through a Sequence without intermediate lists.
 */
sealed interface PreTokenizer {
    /** GPT-2's split, used by ByteLevel when {@code use_regex} is true. */
    Pattern GPT2_PATTERN = RegexTranslator.compile(
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");

    void apply(String piece, Consumer<String> out);

    /** What Split does with the matched delimiters (HF's SplitDelimiterBehavior). */
    enum Behavior { REMOVED, ISOLATED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT, CONTIGUOUS }

    record Split(Pattern pattern, Behavior behavior, boolean invert) implements PreTokenizer {
        @Override
        public void apply(String piece, Consumer<String> out) {
            split(piece, pattern, behavior, invert, out);
        }

        /** HF's NormalizedString::split: the matches and the gaps between them, then folded per behaviour. */
        static void split(String s, Pattern pattern, Behavior behavior, boolean invert, Consumer<String> out) {
            if (behavior == Behavior.ISOLATED) { // the common case, without the span bookkeeping
                int prev = 0;
                Matcher m = pattern.matcher(s);
                while (m.find()) {
                    if (prev < m.start()) out.accept(s.substring(prev, m.start()));
                    if (m.start() < m.end()) out.accept(s.substring(m.start(), m.end()));
                    prev = m.end();
                }
                if (prev < s.length()) out.accept(s.substring(prev));
                return;
            }
            // spans: (start, end, isMatch) triples covering s in order
            int[] spans = new int[16];
            int count = 0;
            int prev = 0;
            Matcher m = pattern.matcher(s);
            while (m.find()) {
                if (count * 3 + 6 > spans.length) spans = java.util.Arrays.copyOf(spans, spans.length * 2);
                if (prev != m.start()) count = addSpan(spans, count, prev, m.start(), !invert ? 0 : 1);
                count = addSpan(spans, count, m.start(), m.end(), !invert ? 1 : 0);
                prev = m.end();
            }
            if (count * 3 + 3 > spans.length) spans = java.util.Arrays.copyOf(spans, spans.length * 2);
            if (prev != s.length()) count = addSpan(spans, count, prev, s.length(), !invert ? 0 : 1);
            emit(s, spans, count, behavior, out);
        }

        private static int addSpan(int[] spans, int count, int start, int end, int isMatch) {
            spans[count * 3] = start;
            spans[count * 3 + 1] = end;
            spans[count * 3 + 2] = isMatch;
            return count + 1;
        }

        private static void emit(String s, int[] spans, int count, Behavior behavior, Consumer<String> out) {
            switch (behavior) {
                case ISOLATED -> {
                    for (int i = 0; i < count; i++) add(s, spans[i * 3], spans[i * 3 + 1], out);
                }
                case REMOVED -> {
                    for (int i = 0; i < count; i++) if (spans[i * 3 + 2] == 0) add(s, spans[i * 3], spans[i * 3 + 1], out);
                }
                case MERGED_WITH_PREVIOUS, CONTIGUOUS -> {
                    // a match (or, for CONTIGUOUS, any span like its predecessor) extends the previous piece
                    int start = -1, end = -1;
                    boolean previousMatch = false;
                    for (int i = 0; i < count; i++) {
                        boolean match = spans[i * 3 + 2] == 1;
                        boolean extend = behavior == Behavior.CONTIGUOUS ? match == previousMatch : match && !previousMatch;
                        if (extend && start >= 0) {
                            end = spans[i * 3 + 1];
                        } else {
                            if (start >= 0) add(s, start, end, out);
                            start = spans[i * 3];
                            end = spans[i * 3 + 1];
                        }
                        previousMatch = match;
                    }
                    if (start >= 0) add(s, start, end, out);
                }
                case MERGED_WITH_NEXT -> {
                    // mirror image of MERGED_WITH_PREVIOUS: walk backwards, a match extends the following piece
                    List<String> reversed = new ArrayList<>();
                    int start = -1, end = -1;
                    boolean previousMatch = false;
                    for (int i = count - 1; i >= 0; i--) {
                        boolean match = spans[i * 3 + 2] == 1;
                        if (match && !previousMatch && start >= 0) {
                            start = spans[i * 3];
                        } else {
                            if (start >= 0) add(s, start, end, reversed::add);
                            start = spans[i * 3];
                            end = spans[i * 3 + 1];
                        }
                        previousMatch = match;
                    }
                    if (start >= 0) add(s, start, end, reversed::add);
                    for (int i = reversed.size() - 1; i >= 0; i--) out.accept(reversed.get(i));
                }
            }
        }

        private static void add(String s, int start, int end, Consumer<String> out) {
            if (end > start) out.accept(s.substring(start, end));
        }
    }

    /**
     * HF's ByteLevel pre-tokenizer: a space is prepended to every piece that lacks one when
     * {@code add_prefix_space}, the GPT-2 regex splits when {@code use_regex}, and every piece is rewritten as
     * its UTF-8 bytes in the byte-to-unicode alphabet. With {@code mapBytes} false the rewriting is left to the
     * BPE stage (see {@link Bpe#encodeBytes}), which is the same when nothing comes after this step.
     */
    record ByteLevelSplit(boolean addPrefixSpace, boolean useRegex, boolean mapBytes) implements PreTokenizer {
        @Override
        public void apply(String piece, Consumer<String> out) {
            String s = addPrefixSpace && !piece.startsWith(" ") ? " " + piece : piece;
            Consumer<String> sink = mapBytes ? p -> out.accept(ByteLevel.encode(p)) : out;
            if (!useRegex) {
                if (!s.isEmpty()) sink.accept(s);
                return;
            }
            Split.split(s, GPT2_PATTERN, Behavior.ISOLATED, false, sink);
        }
    }

    record Sequence(List<PreTokenizer> steps) implements PreTokenizer {
        @Override
        public void apply(String piece, Consumer<String> out) {
            apply(0, piece, out);
        }

        private void apply(int step, String piece, Consumer<String> out) {
            if (step == steps.size()) out.accept(piece);
            else steps.get(step).apply(piece, p -> apply(step + 1, p, out));
        }
    }
}
