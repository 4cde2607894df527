package io.lightmesh.engine.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.text.Normalizer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.function.UnaryOperator;

/**
 * A byte-level BPE tokenizer read from a Hugging Face tokenizer.json, producing the same ids as HF tokenizers.
 * The pipeline is HF's: added tokens are split out of the raw text first (leftmost-longest), the rest is
 * normalized (none or a Unicode normal form), pre-tokenized (Split / ByteLevel / Sequence, as the file says),
 * and each piece is merged by {@link Bpe}. Decoding maps tokens back to bytes (GPT-2 alphabet) and the bytes to
 * UTF-8, with U+FFFD for invalid sequences. Post-processors are ignored: {@link #encode} never adds BOS/EOS.
 * Instances are immutable and thread-safe.
 */
public final class Tokenizer {
    private static final String[] EOS_NAMES = {"<end_of_sentence>", "<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>", "<eos>"};
    private static final String[] BOS_NAMES = {"<beginning_of_sentence>", "<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>"};

    private final String[] idToToken;    // (vocabSize) token text, null for unused ids
    private final byte[][] idToBytes;    // (vocabSize) the bytes each token decodes to
    private final boolean[] special;     // (vocabSize) added tokens marked special
    private final Map<String, Integer> tokenToId;
    private final AddedTokens rawAdded;        // added tokens matched before normalization (normalized: false)
    private final AddedTokens normalizedAdded; // added tokens matched after it (normalized: true)
    private final UnaryOperator<String> normalizer; // null: none
    private final PreTokenizer preTokenizer;        // null: each segment is one word
    private final boolean bytesAtBpe;               // ByteLevel ends the pre-tokenizer: Bpe maps the bytes
    private final Bpe bpe;
    private final OptionalInt eosId;
    private final OptionalInt bosId;

    private Tokenizer(Map<String, Integer> vocab, List<AddedTokens.AddedToken> added, UnaryOperator<String> normalizer,
                      PreTokenizer preTokenizer, Bpe bpe, String eosToken, String bosToken) {
        this.tokenToId = new HashMap<>(vocab);
        for (AddedTokens.AddedToken t : added) tokenToId.put(t.content(), t.id());
        int size = 0;
        for (int id : tokenToId.values()) size = Math.max(size, id + 1);
        this.idToToken = new String[size];
        for (Map.Entry<String, Integer> e : vocab.entrySet()) idToToken[e.getValue()] = e.getKey();
        this.special = new boolean[size];
        for (AddedTokens.AddedToken t : added) {
            idToToken[t.id()] = t.content();
            special[t.id()] = t.special();
        }
        this.idToBytes = new byte[size][];
        for (int i = 0; i < size; i++) idToBytes[i] = idToToken[i] == null ? new byte[0] : ByteLevel.tokenBytes(idToToken[i]);
        this.rawAdded = new AddedTokens(added.stream().filter(t -> !t.normalized() || normalizer == null).toList());
        this.normalizedAdded = new AddedTokens(added.stream().filter(t -> t.normalized() && normalizer != null)
                .map(t -> new AddedTokens.AddedToken(t.id(), normalizer.apply(t.content()), t.special(), t.singleWord(),
                        t.lstrip(), t.rstrip(), true))
                .toList());
        this.normalizer = normalizer;
        this.preTokenizer = deferByteMapping(preTokenizer);
        this.bytesAtBpe = this.preTokenizer != preTokenizer;
        this.bpe = bpe;
        this.eosId = lookup(eosToken, EOS_NAMES);
        this.bosId = lookup(bosToken, BOS_NAMES);
    }

    /** Loads tokenizer.json; eos/bos come from tokenizer_config.json beside it when that file exists. */
    public static Tokenizer load(Path tokenizerJson) throws IOException {
        ObjectMapper json = new ObjectMapper();
        JsonNode root = json.readTree(tokenizerJson.toFile());
        JsonNode config = null;
        Path configPath = tokenizerJson.resolveSibling("tokenizer_config.json");
        if (Files.isRegularFile(configPath)) config = json.readTree(configPath.toFile());
        try {
            return parse(root, config);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(tokenizerJson + ": " + e.getMessage(), e);
        }
    }

    /**
     * Builds a tokenizer from parsed tokenizer.json and (nullable) tokenizer_config.json. Unsupported components
     * fail here with a message naming the field, rather than tokenizing differently from HF.
     */
    public static Tokenizer parse(JsonNode root, JsonNode config) {
        JsonNode model = root.path("model");
        String type = model.path("type").asText("BPE");
        if (!type.equals("BPE")) throw new IllegalArgumentException("field model.type: only BPE is supported, got " + type);
        if (model.path("byte_fallback").asBoolean(false)) {
            throw new IllegalArgumentException("field model.byte_fallback: true is not supported");
        }
        for (String f : new String[]{"continuing_subword_prefix", "end_of_word_suffix"}) {
            if (!model.path(f).asText("").isEmpty()) throw new IllegalArgumentException("field model." + f + " is not supported");
        }
        Map<String, Integer> vocab = new HashMap<>(model.path("vocab").size() * 2);
        model.path("vocab").properties().forEach(e -> vocab.put(e.getKey(), e.getValue().asInt()));
        if (vocab.isEmpty()) throw new IllegalArgumentException("field model.vocab is missing or empty");
        // the id tables are sized by the largest id: bound it by the file's own size (real vocabularies are dense)
        long maxId = 4L * (vocab.size() + root.path("added_tokens").size()) + 1024;
        for (Map.Entry<String, JsonNode> e : model.path("vocab").properties()) {
            JsonNode id = e.getValue();
            if (!id.canConvertToInt() || !id.isIntegralNumber() || id.asInt() < 0 || id.asInt() > maxId) {
                throw new IllegalArgumentException("field model.vocab: token '" + e.getKey() + "' has id " + id
                        + "; ids are integers in 0.." + maxId + " (four times the entries)");
            }
        }

        JsonNode mergesNode = model.path("merges");
        PairMap merges = new PairMap(mergesNode.size());
        for (int rank = 0; rank < mergesNode.size(); rank++) {
            JsonNode m = mergesNode.get(rank);
            String a, b;
            if (m.isArray() && m.size() == 2) {
                a = m.get(0).asText();
                b = m.get(1).asText();
            } else {
                String line = m.asText();
                int sp = line.indexOf(' ');
                if (sp < 0 || line.indexOf(' ', sp + 1) >= 0) {
                    throw new IllegalArgumentException("field model.merges[" + rank + "]: expected two tokens, got '" + line + "'");
                }
                a = line.substring(0, sp);
                b = line.substring(sp + 1);
            }
            Integer ia = vocab.get(a), ib = vocab.get(b), merged = vocab.get(a + b);
            if (ia == null || ib == null || merged == null) {
                throw new IllegalArgumentException("field model.merges[" + rank + "]: '" + a + "' + '" + b
                        + "' names a token that is not in the vocab");
            }
            merges.putIfAbsent(ia, ib, rank, merged);
        }
        int unkId = -1;
        if (model.hasNonNull("unk_token")) {
            Integer u = vocab.get(model.get("unk_token").asText());
            if (u != null) unkId = u;
        }
        Bpe bpe = new Bpe(vocab, merges, model.path("ignore_merges").asBoolean(false), unkId,
                model.path("fuse_unk").asBoolean(false));

        // Ids as HF's AddedVocabulary assigns them, which is not always the "id" field: a token whose content is
        // in the model vocab takes that id, any other the next free id past the vocab (declared ids are only
        // checked, with a warning, by HF). Real files agree with both; hand-edited ones may not.
        List<AddedTokens.AddedToken> added = new ArrayList<>();
        Map<String, Integer> addedIds = new HashMap<>();
        int maxAdded = -1;
        for (JsonNode t : root.path("added_tokens")) {
            String content = t.path("content").asText();
            boolean isSpecial = t.path("special").asBoolean(false);
            Integer id = addedIds.containsKey(content) ? addedIds.get(content) : vocab.get(content);
            if (id == null) id = maxAdded >= vocab.size() ? maxAdded + 1 : vocab.size();
            addedIds.put(content, id);
            maxAdded = Math.max(maxAdded, id);
            added.add(new AddedTokens.AddedToken(id, content, isSpecial,
                    t.path("single_word").asBoolean(false), t.path("lstrip").asBoolean(false),
                    t.path("rstrip").asBoolean(false), t.path("normalized").asBoolean(!isSpecial)));
        }
        String decoderType = root.path("decoder").path("type").asText("");
        if (!decoderType.equals("ByteLevel") && !isByteLevelSequence(root.path("decoder"))) {
            throw new IllegalArgumentException("field decoder: only ByteLevel is supported, got "
                    + (decoderType.isEmpty() ? "none" : decoderType));
        }
        return new Tokenizer(vocab, added, normalizer(root.path("normalizer"), "normalizer"),
                preTokenizer(root.path("pre_tokenizer"), "pre_tokenizer"), bpe,
                specialTokenName(config, "eos_token"), specialTokenName(config, "bos_token"));
    }

    /** Token ids of {@code text}; added tokens, special ones included, are recognized. */
    public int[] encode(String text) {
        return encode(text, true);
    }

    /**
     * Token ids of {@code text}. When {@code parseSpecial} is false, special tokens written in the text are
     * tokenized as plain text (for untrusted user content); non-special added tokens are still recognized.
     */
    public int[] encode(String text, boolean parseSpecial) {
        IntList out = new IntList(text.length() / 3 + 16);
        AddedTokens.Sink words = new AddedTokens.Sink() {
            @Override
            public void text(String segment) {
                if (preTokenizer == null) bpe.encodeWord(segment, out);
                else if (bytesAtBpe) preTokenizer.apply(segment, p -> bpe.encodeBytes(p, out));
                else preTokenizer.apply(segment, p -> bpe.encodeWord(p, out));
            }

            @Override
            public void token(AddedTokens.AddedToken token) {
                out.add(token.id());
            }
        };
        rawAdded.split(text, parseSpecial, new AddedTokens.Sink() {
            @Override
            public void text(String segment) {
                if (normalizer == null) words.text(segment);
                else normalizedAdded.split(normalizer.apply(segment), parseSpecial, words);
            }

            @Override
            public void token(AddedTokens.AddedToken token) {
                out.add(token.id());
            }
        });
        return out.toArray();
    }

    /** The text of {@code ids}; special tokens are written as their text. Unknown ids are skipped. */
    public String decode(int[] ids) {
        return decode(ids, false);
    }

    /** The text of {@code ids}, leaving special tokens out when {@code skipSpecial}. */
    public String decode(int[] ids, boolean skipSpecial) {
        int total = 0;
        for (int id : ids) if (id >= 0 && id < idToBytes.length) total += idToBytes[id].length;
        byte[] bytes = new byte[total];
        int n = 0;
        for (int id : ids) {
            if (id < 0 || id >= idToBytes.length || skipSpecial && special[id]) continue;
            byte[] b = idToBytes[id];
            System.arraycopy(b, 0, bytes, n, b.length);
            n += b.length;
        }
        return Utf8.decode(bytes, n);
    }

    /** The id of a token given in its vocabulary form (e.g. "Ġthe", "<end_of_sentence>"), or -1. */
    public int tokenId(String token) {
        Integer id = tokenToId.get(token);
        return id == null ? -1 : id;
    }

    /** The vocabulary form of a token, or null for an id that names none. */
    public String token(int id) {
        return id >= 0 && id < idToToken.length ? idToToken[id] : null;
    }

    /** Whether {@code id} is an added token marked special. */
    public boolean isSpecial(int id) {
        return id >= 0 && id < special.length && special[id];
    }

    /** One more than the largest id in the vocabulary or the added tokens (the embedding table may be larger). */
    public int vocabSize() {
        return idToToken.length;
    }

    public OptionalInt eosId() {
        return eosId;
    }

    public OptionalInt bosId() {
        return bosId;
    }

    /** A copy of the bytes token {@code id} decodes to (empty for unknown ids), e.g. for log-probability listings. */
    public byte[] bytesOf(int id) { return tokenBytes(id).clone(); }

    /** The bytes token {@code id} decodes to (empty for unknown ids); shared, do not modify. */
    byte[] tokenBytes(int id) {
        return id >= 0 && id < idToBytes.length ? idToBytes[id] : new byte[0];
    }

    /**
     * The same pre-tokenizer with its final ByteLevel step leaving pieces as raw text, for {@link Bpe#encodeBytes}
     * to map (and cache) them; the argument itself when ByteLevel is not the last step.
     */
    private static PreTokenizer deferByteMapping(PreTokenizer p) {
        if (p instanceof PreTokenizer.ByteLevelSplit b) return new PreTokenizer.ByteLevelSplit(b.addPrefixSpace(), b.useRegex(), false);
        if (p instanceof PreTokenizer.Sequence(List<PreTokenizer> steps) && !steps.isEmpty()
                && steps.getLast() instanceof PreTokenizer.ByteLevelSplit) {
            List<PreTokenizer> copy = new ArrayList<>(steps);
            copy.set(copy.size() - 1, deferByteMapping(copy.getLast()));
            return new PreTokenizer.Sequence(List.copyOf(copy));
        }
        return p;
    }

    private OptionalInt lookup(String configured, String[] wellKnown) {
        if (configured != null) {
            int id = tokenId(configured);
            return configured.isEmpty() || id < 0 ? OptionalInt.empty() : OptionalInt.of(id);
        }
        for (String name : wellKnown) {
            int id = tokenId(name);
            if (id >= 0) return OptionalInt.of(id);
        }
        return OptionalInt.empty();
    }

    /** The token named by tokenizer_config.json's field: a string or {"content": ...}; "" when set to null; null when absent. */
    private static String specialTokenName(JsonNode config, String field) {
        if (config == null || !config.has(field)) return null;
        JsonNode v = config.get(field);
        if (v.isNull()) return "";
        return v.isObject() ? v.path("content").asText("") : v.asText();
    }

    private static boolean isByteLevelSequence(JsonNode decoder) {
        if (!decoder.path("type").asText("").equals("Sequence")) return false;
        JsonNode steps = decoder.path("decoders");
        return steps.size() == 1 && steps.get(0).path("type").asText("").equals("ByteLevel");
    }

    private static UnaryOperator<String> normalizer(JsonNode n, String where) {
        if (n.isMissingNode() || n.isNull()) return null;
        String type = n.path("type").asText("");
        return switch (type) {
            case "NFC" -> s -> Normalizer.normalize(s, Normalizer.Form.NFC);
            case "NFD" -> s -> Normalizer.normalize(s, Normalizer.Form.NFD);
            case "NFKC" -> s -> Normalizer.normalize(s, Normalizer.Form.NFKC);
            case "NFKD" -> s -> Normalizer.normalize(s, Normalizer.Form.NFKD);
            case "Sequence" -> {
                List<UnaryOperator<String>> steps = new ArrayList<>();
                int i = 0;
                for (JsonNode step : n.path("normalizers")) {
                    UnaryOperator<String> f = normalizer(step, where + ".normalizers[" + i++ + "]");
                    if (f != null) steps.add(f);
                }
                if (steps.isEmpty()) yield null;
                yield s -> {
                    for (UnaryOperator<String> f : steps) s = f.apply(s);
                    return s;
                };
            }
            default -> throw new IllegalArgumentException("field " + where + ": unsupported normalizer type '" + type + "'");
        };
    }

    private static PreTokenizer preTokenizer(JsonNode n, String where) {
        if (n.isMissingNode() || n.isNull()) return null;
        String type = n.path("type").asText("");
        return switch (type) {
            case "ByteLevel" -> new PreTokenizer.ByteLevelSplit(n.path("add_prefix_space").asBoolean(true),
                    n.path("use_regex").asBoolean(true), true);
            case "Split" -> {
                JsonNode pattern = n.path("pattern");
                java.util.regex.Pattern p;
                if (pattern.has("Regex")) {
                    try {
                        p = RegexTranslator.compile(pattern.get("Regex").asText());
                    } catch (java.util.regex.PatternSyntaxException e) {
                        throw new IllegalArgumentException("field " + where + ".pattern.Regex: " + e.getDescription(), e);
                    }
                } else if (pattern.has("String")) {
                    p = java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(pattern.get("String").asText()));
                } else {
                    throw new IllegalArgumentException("field " + where + ".pattern: expected {\"Regex\": ...} or {\"String\": ...}");
                }
                String behavior = n.path("behavior").asText("");
                PreTokenizer.Behavior b = switch (behavior) {
                    case "Removed" -> PreTokenizer.Behavior.REMOVED;
                    case "Isolated" -> PreTokenizer.Behavior.ISOLATED;
                    case "MergedWithPrevious" -> PreTokenizer.Behavior.MERGED_WITH_PREVIOUS;
                    case "MergedWithNext" -> PreTokenizer.Behavior.MERGED_WITH_NEXT;
                    case "Contiguous" -> PreTokenizer.Behavior.CONTIGUOUS;
                    default -> throw new IllegalArgumentException("field " + where + ".behavior: unsupported value '" + behavior + "'");
                };
                yield new PreTokenizer.Split(p, b, n.path("invert").asBoolean(false));
            }
            case "Sequence" -> {
                List<PreTokenizer> steps = new ArrayList<>();
                int i = 0;
                for (JsonNode step : n.path("pretokenizers")) {
                    PreTokenizer p = preTokenizer(step, where + ".pretokenizers[" + i++ + "]");
                    if (p != null) steps.add(p);
                }
                yield new PreTokenizer.Sequence(List.copyOf(steps));
            }
            default -> throw new IllegalArgumentException("field " + where + ": unsupported pre-tokenizer type '" + type + "'");
        };
    }
}
