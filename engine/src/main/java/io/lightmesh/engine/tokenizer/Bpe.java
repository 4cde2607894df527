package io.lightmesh.engine.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The BPE model of HF tokenizers: a pre-tokenized word starts as one symbol per code point and the pair of
 * adjacent symbols with the lowest merge rank is merged (leftmost first among equal ranks) until no pair has a
 * merge. Symbols live in a linked list over arrays and candidate pairs in a min-heap keyed by
 * (rank << 32 | position), so a word of n symbols costs O(n log n); stale heap entries are skipped when popped.
 * Results for short words are cached, since natural text repeats its words.
 */
final class Bpe {
    private static final int CACHE_MAX_WORD = 128;   // chars; longer words are rare and not worth keeping
    private static final int CACHE_MAX_ENTRIES = 200_000;

    private final Map<String, Integer> vocab;
    private final PairMap merges;
    /** Vocab id of each single-char token in the BMP, -1 if none. (65536) */
    private final int[] charIds;
    private final boolean ignoreMerges;
    private final int unkId;        // -1: characters not in the vocab are dropped, as HF does without unk_token
    private final boolean fuseUnk;
    private final ConcurrentHashMap<String, int[]> cache = new ConcurrentHashMap<>();

    Bpe(Map<String, Integer> vocab, PairMap merges, boolean ignoreMerges, int unkId, boolean fuseUnk) {
        this.vocab = vocab;
        this.merges = merges;
        this.ignoreMerges = ignoreMerges;
        this.unkId = unkId;
        this.fuseUnk = fuseUnk;
        this.charIds = new int[65536];
        Arrays.fill(charIds, -1);
        for (Map.Entry<String, Integer> e : vocab.entrySet()) {
            String t = e.getKey();
            if (t.length() == 1) charIds[t.charAt(0)] = e.getValue();
        }
    }

    /** Appends the ids of one pre-tokenized word, whose code points are the initial symbols. */
    void encodeWord(String word, IntList out) {
        encode(word, false, out);
    }

    /**
     * Appends the ids of one pre-tokenized piece given as raw text, whose UTF-8 bytes (in GPT-2's byte alphabet)
     * are the initial symbols: the same ids as {@code encodeWord(ByteLevel.encode(raw))} without building that
     * string, and cached under the raw text.
     */
    void encodeBytes(String raw, IntList out) {
        encode(raw, true, out);
    }

    private void encode(String word, boolean bytes, IntList out) {
        if (word.isEmpty()) return;
        if (ignoreMerges) {
            Integer id = vocab.get(bytes ? ByteLevel.encode(word) : word);
            if (id != null) {
                out.add(id);
                return;
            }
        }
        if (word.length() > CACHE_MAX_WORD) {
            out.addAll(bytes ? mergeBytes(word) : mergeChars(word));
            return;
        }
        int[] ids = cache.get(word);
        if (ids == null) {
            ids = bytes ? mergeBytes(word) : mergeChars(word);
            if (cache.size() >= CACHE_MAX_ENTRIES) cache.clear();
            cache.put(word, ids);
        }
        out.addAll(ids);
    }

    private int[] mergeChars(String word) {
        int len = word.length();
        int[] sym = new int[len];
        int n = 0;
        for (int i = 0; i < len; ) {
            int cp = word.codePointAt(i);
            int w = Character.charCount(cp);
            int id = cp < 65536 ? charIds[cp] : vocab.getOrDefault(word.substring(i, i + w), -1);
            i += w;
            n = addSymbol(sym, n, id);
        }
        return merge(sym, n);
    }

    private int[] mergeBytes(String raw) {
        byte[] utf8 = raw.getBytes(StandardCharsets.UTF_8);
        int[] sym = new int[utf8.length];
        int n = 0;
        for (byte b : utf8) n = addSymbol(sym, n, charIds[ByteLevel.BYTE_TO_CHAR[b & 0xFF]]);
        return merge(sym, n);
    }

    /** Appends a symbol; an id of -1 (not in the vocab) becomes unk, or is dropped as HF does without unk. */
    private int addSymbol(int[] sym, int n, int id) {
        if (id < 0) {
            if (unkId < 0 || fuseUnk && n > 0 && sym[n - 1] == unkId) return n;
            id = unkId;
        }
        sym[n] = id;
        return n + 1;
    }

    /** Merges sym[0, n) in place as far as the merges allow; returns the final ids. */
    private int[] merge(int[] sym, int n) {
        // sym[i]: the id at list node i (-1 once merged into its left neighbour); prev/next: links (-1 = none)
        if (n < 2) return Arrays.copyOf(sym, n);
        int[] prev = new int[n];
        int[] next = new int[n];
        for (int i = 0; i < n; i++) {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        LongHeap heap = new LongHeap(n);
        for (int i = 0; i + 1 < n; i++) push(heap, sym, i, i + 1);
        int live = n;
        while (!heap.isEmpty()) {
            long top = heap.pop();
            int rank = (int) (top >>> 32);
            int pos = (int) top;
            int right = next[pos];
            if (sym[pos] < 0 || right < 0) continue;
            long m = merges.get(sym[pos], sym[right]);
            if (m == PairMap.MISSING || (int) (m >>> 32) != rank) continue; // stale entry
            sym[pos] = (int) m;
            sym[right] = -1;
            next[pos] = next[right];
            if (next[right] >= 0) prev[next[right]] = pos;
            live--;
            if (prev[pos] >= 0) push(heap, sym, prev[pos], pos);
            if (next[pos] >= 0) push(heap, sym, pos, next[pos]);
        }
        int[] ids = new int[live];
        for (int i = 0, k = 0; i >= 0; i = next[i]) ids[k++] = sym[i];
        return ids;
    }

    private void push(LongHeap heap, int[] sym, int left, int right) {
        long m = merges.get(sym[left], sym[right]);
        if (m != PairMap.MISSING) heap.push((m & 0xFFFFFFFF00000000L) | left);
    }

    /** Binary min-heap of longs. */
    private static final class LongHeap {
        private long[] a;
        private int size;

        LongHeap(int capacity) {
            a = new long[Math.max(4, capacity)];
        }

        boolean isEmpty() {
            return size == 0;
        }

        void push(long v) {
            if (size == a.length) a = Arrays.copyOf(a, a.length * 2);
            int i = size++;
            while (i > 0) {
                int p = (i - 1) >>> 1;
                if (a[p] <= v) break;
                a[i] = a[p];
                i = p;
            }
            a[i] = v;
        }

        long pop() {
            long top = a[0];
            long v = a[--size];
            int i = 0;
            while (true) {
                int c = 2 * i + 1;
                if (c >= size) break;
                if (c + 1 < size && a[c + 1] < a[c]) c++;
                if (a[c] >= v) break;
                a[i] = a[c];
                i = c;
            }
            a[i] = v;
            return top;
        }
    }
}
