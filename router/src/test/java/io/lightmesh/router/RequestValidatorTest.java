package io.lightmesh.router;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.proto.v1.ChatInput;
import io.lightmesh.proto.v1.ChatMessage;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.Role;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.TokenIds;
import io.lightmesh.proto.v1.TokenizeRequest;
import io.lightmesh.proto.v1.Tool;
import org.junit.jupiter.api.Test;

import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every request limit on both sides: a request exactly at the limit is admitted, one over it is refused with
 * INVALID_ARGUMENT whose description names the field, the limit and its configuration key; and the defaults are the
 * documented ones.
 */
class RequestValidatorTest {
    private static final RequestLimits LIMITS = new RequestLimits(100, 3, 2, 2, 5, 10);
    private static final RequestValidator V = DemoModel.validator(200, LIMITS);

    private static GenerateRequest.Builder tokens(int n) {
        TokenIds.Builder ids = TokenIds.newBuilder();
        for (int i = 0; i < n; i++) ids.addIds(5 + i);
        return GenerateRequest.newBuilder().setTokenIds(ids);
    }

    private static GenerateRequest chat(int messages, int tools) {
        ChatInput.Builder c = ChatInput.newBuilder();
        for (int i = 0; i < messages; i++) c.addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_USER).setContent("hi"));
        for (int i = 0; i < tools; i++) c.addTools(Tool.newBuilder().setName("t" + i));
        return GenerateRequest.newBuilder().setChat(c).build();
    }

    private static void refused(GenerateRequest r, String... inMessage) {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> V.validate(r, "id"));
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
        for (String s : inMessage) assertTrue(e.getStatus().getDescription().contains(s), () -> e.getStatus().getDescription() + " lacks " + s);
    }

    private static void atAndOver(Function<Integer, GenerateRequest> request, int limit, String... inMessage) {
        V.validate(request.apply(limit), "id");
        refused(request.apply(limit + 1), inMessage);
    }

    @Test
    void promptTokens() {
        atAndOver(n -> tokens(n).build(), 200, "prompt has 201 tokens", "at most 200", "lightmesh.max-prompt-tokens");
        // text prompts are counted after tokenization, with the same key
        refused(GenerateRequest.newBuilder().setPrompt("word ".repeat(300)).build(), "lightmesh.max-prompt-tokens");
    }

    @Test
    void maxNewTokens() {
        atAndOver(n -> tokens(1).setSampling(SamplingParams.newBuilder().setMaxNewTokens(n)).build(), 100,
                "sampling.max_new_tokens is 101", "at most 100", "lightmesh.max-new-tokens");
    }

    @Test
    void theDefaultMaxNewTokensNeverExceedsTheLimit() {
        RequestValidator v = new RequestValidator(DemoModel.CONFIG, DemoModel.TOKENIZER, "demo", 200, 5000, LIMITS);
        GenerationSpec spec = v.validate(tokens(1).build(), "id");
        assertEquals(100, spec.getSampling().getMaxNewTokens());
    }

    @Test
    void stopStringsAndTheirLength() {
        atAndOver(n -> tokens(1).setSampling(SamplingParams.newBuilder().addAllStop(java.util.Collections.nCopies(n, "x"))).build(), 2,
                "sampling.stop has 3 strings", "at most 2", "lightmesh.max-stop-strings");
        atAndOver(n -> tokens(1).setSampling(SamplingParams.newBuilder().addStop("y".repeat(n))).build(), 5,
                "sampling.stop[0] has 6 characters", "at most 5", "lightmesh.max-stop-chars");
    }

    @Test
    void messagesAndTools() {
        atAndOver(n -> chat(n, 0), 3, "chat.messages has 4", "at most 3", "lightmesh.max-messages");
        atAndOver(n -> chat(1, n), 2, "chat.tools has 3", "at most 2", "lightmesh.max-tools");
    }

    @Test
    void idLengths() {
        atAndOver(n -> tokens(1).setRequestId("r".repeat(n)).build(), 10, "request_id has 11 characters");
        atAndOver(n -> tokens(1).setConversationId("c".repeat(n)).build(), 10, "conversation_id has 11 characters");
    }

    @Test
    void tokenizeKeepsTheSameLimits() {
        ChatInput.Builder c = ChatInput.newBuilder();
        for (int i = 0; i < 4; i++) c.addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_USER).setContent("hi"));
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> V.tokenize(TokenizeRequest.newBuilder().setChat(c).build()));
        assertTrue(e.getStatus().getDescription().contains("lightmesh.max-messages"));
        e = assertThrows(StatusRuntimeException.class, () -> V.tokenize(TokenizeRequest.newBuilder().setText("word ".repeat(300)).build()));
        assertTrue(e.getStatus().getDescription().contains("lightmesh.max-prompt-tokens"));
        var ok = V.tokenize(TokenizeRequest.newBuilder().setText("hello world").build());
        assertTrue(ok.getCount() > 0 && ok.getCount() == ok.getIdsCount());
    }

    @Test
    void documentedDefaults() {
        RequestLimits d = RequestLimits.defaults();
        assertEquals(131_072, d.maxNewTokens());
        assertEquals(4096, d.maxMessages());
        assertEquals(128, d.maxTools());
        assertEquals(16, d.maxStops());
        assertEquals(1024, d.maxStopChars());
        assertEquals(256, d.maxIdChars());
        assertThrows(IllegalArgumentException.class, () -> new RequestLimits(0, 1, 1, 1, 1, 1));
    }
}
