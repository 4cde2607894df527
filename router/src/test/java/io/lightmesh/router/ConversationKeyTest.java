package io.lightmesh.router;

import io.lightmesh.proto.v1.ChatInput;
import io.lightmesh.proto.v1.ChatMessage;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.Role;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

class ConversationKeyTest {
    static ChatMessage msg(Role role, String content) { return ChatMessage.newBuilder().setRole(role).setContent(content).build(); }

    static GenerateRequest chat(ChatMessage... ms) {
        return GenerateRequest.newBuilder().setChat(ChatInput.newBuilder().addAllMessages(java.util.List.of(ms))).build();
    }

    @Test
    void theTurnsOfOneChatShareTheirKey() {
        ChatMessage sys = msg(Role.ROLE_SYSTEM, "Be brief."), first = msg(Role.ROLE_USER, "What is 2+2?");
        String turn1 = ConversationKey.of(chat(sys, first), "r1");
        String turn2 = ConversationKey.of(chat(sys, first, msg(Role.ROLE_ASSISTANT, "4"), msg(Role.ROLE_USER, "And 3+3?")), "r2");
        assertEquals(turn1, turn2);
        assertNotEquals(turn1, ConversationKey.of(chat(sys, msg(Role.ROLE_USER, "What is 2+3?")), "r3"), "another chat");
        assertNotEquals(turn1, ConversationKey.of(chat(msg(Role.ROLE_SYSTEM, "Be brief.W"), msg(Role.ROLE_USER, "hat is 2+2?")), "r4"),
                "fields are delimited");
    }

    @Test
    void anExplicitConversationIdWinsAndPlainPromptsUseTheRequestId() {
        assertEquals("c", ConversationKey.of(chat(msg(Role.ROLE_USER, "hi")).toBuilder().setConversationId("c").build(), "r"));
        assertEquals("r", ConversationKey.of(GenerateRequest.newBuilder().setPrompt("hi").build(), "r"));
    }
}
