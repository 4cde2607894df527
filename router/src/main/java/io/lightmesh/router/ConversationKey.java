package io.lightmesh.router;

import io.lightmesh.proto.v1.ChatMessage;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.Role;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * The Kafka record key of a request, which picks its partition and so the prefill worker whose prefix cache serves
 * it: the client's conversation id when given; for a chat without one (the OpenAI API has none), a digest of the
 * conversation's opening (the messages up to and including the first user message), the same for every later turn
 * of that chat; otherwise the request id (no relation to other requests assumed).
 *
 * <p>Keying by the opening sends chats that start alike (same system prompt and first question) to one partition too:
 * they share that prefix in the cache as well. Their order on the partition is kept, which costs nothing here.
 */
public final class ConversationKey {
    private ConversationKey() {}

    public static String of(GenerateRequest r, String requestId) {
        if (!r.getConversationId().isEmpty()) return r.getConversationId();
        if (!r.hasChat() || r.getChat().getMessagesCount() == 0) return requestId;
        MessageDigest d = sha256();
        for (ChatMessage m : r.getChat().getMessagesList()) {
            update(d, m.getRole().name());
            update(d, m.getName());
            update(d, m.getContent());
            if (m.getRole() == Role.ROLE_USER) break;
        }
        return "chat-" + HexFormat.of().formatHex(d.digest(), 0, 16);
    }

    /** A length-prefixed field, so that ("ab", "c") and ("a", "bc") differ. */
    private static void update(MessageDigest d, String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        d.update(new byte[]{(byte) (b.length >>> 24), (byte) (b.length >>> 16), (byte) (b.length >>> 8), (byte) b.length});
        d.update(b);
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is part of every JDK", e);
        }
    }
}
