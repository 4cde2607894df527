package io.lightmesh.engine.tokenizer;

import java.util.Set;
import java.util.regex.Pattern;

/**
 * Compiles an Oniguruma pattern from a tokenizer.json (HF tokenizers uses Oniguruma) as a java.util.regex
 * Pattern with the same meaning for what tokenizer regexes use. Two differences matter: Oniguruma's {@code \s},
 * {@code \d}, {@code \w} and case folding are Unicode-wide (Java's are ASCII unless UNICODE_CHARACTER_CLASS),
 * and Oniguruma accepts bare script and property names ({@code \p{Han}}, {@code \p{^L}}) where Java wants
 * {@code \p{IsHan}}, {@code \P{L}}.
 */
final class RegexTranslator {
    /** General categories, which Java accepts bare. */
    private static final Set<String> CATEGORIES = Set.of(
            "L", "Lu", "Ll", "Lt", "Lm", "Lo", "LC", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No",
            "P", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So",
            "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf", "Cs", "Co", "Cn");

    private RegexTranslator() {}

    static Pattern compile(String oniguruma) {
        return Pattern.compile(translate(oniguruma), Pattern.UNICODE_CHARACTER_CLASS);
    }

    static String translate(String re) {
        StringBuilder sb = new StringBuilder(re.length() + 16);
        for (int i = 0; i < re.length(); i++) {
            char c = re.charAt(i);
            if (c != '\\' || i + 1 >= re.length()) {
                sb.append(c);
                continue;
            }
            char e = re.charAt(i + 1);
            if ((e == 'p' || e == 'P') && i + 2 < re.length() && re.charAt(i + 2) == '{') {
                int close = re.indexOf('}', i + 3);
                if (close > 0) {
                    String name = re.substring(i + 3, close);
                    boolean negate = e == 'P';
                    if (name.startsWith("^")) {
                        negate = !negate;
                        name = name.substring(1);
                    }
                    boolean bare = !CATEGORIES.contains(name) && !name.startsWith("Is") && !name.startsWith("In")
                            && !name.contains("=");
                    sb.append('\\').append(negate ? 'P' : 'p').append('{').append(bare ? "Is" + name : name).append('}');
                    i = close;
                    continue;
                }
            }
            if (e == 'h') { // Oniguruma: hexadecimal digit (Java: horizontal space)
                sb.append("[0-9a-fA-F]");
                i++;
                continue;
            }
            if (e == 'H') {
                sb.append("[^0-9a-fA-F]");
                i++;
                continue;
            }
            sb.append(c).append(e);
            i++;
        }
        return sb.toString();
    }
}
