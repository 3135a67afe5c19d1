// A Kotlin client of the gateway's typed chat API (aigateway.chat.v1.ChatService),
// called through the Envoy edge with the Java stubs from grpc-java's protoc plugin.
//
// Usage: chat_client ADDRESS API_KEY
// Prints one JSON object with what each call returned, for tests/clients to check.
// Exits 1 only when it cannot produce that object: a failed call is data, not an error.
package dev.aigateway.clients

import com.google.gson.GsonBuilder
import com.google.rpc.ErrorInfo
import dev.aigateway.chat.v1.ChatServiceGrpc
import dev.aigateway.chat.v1.CreateChatCompletionRequest
import dev.aigateway.chat.v1.ListModelsRequest
import dev.aigateway.chat.v1.StreamChatCompletionRequest
import dev.aigateway.type.v1.ChatCompletionParams
import dev.aigateway.type.v1.ChatMessage
import dev.aigateway.type.v1.Role
import dev.aigateway.type.v1.StreamOptions
import io.grpc.ManagedChannel
import io.grpc.ManagedChannelBuilder
import io.grpc.Metadata
import io.grpc.StatusRuntimeException
import io.grpc.protobuf.StatusProto
import io.grpc.stub.MetadataUtils
import java.util.concurrent.TimeUnit
import kotlin.system.exitProcess

// Has the shape of a gateway key but matches no key in the store.
const val INVALID_KEY = "sk-aigw-invalid0-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

// Deadline of each call. The gateway's provider simulator responds in milliseconds,
// so a call that takes this long has hung.
const val CALL_TIMEOUT_SECONDS = 20L

private val AUTHORIZATION: Metadata.Key<String> =
    Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER)

/** Returns a blocking stub that sends [key] as a bearer token, with a fresh deadline. */
fun stub(channel: ManagedChannel, key: String): ChatServiceGrpc.ChatServiceBlockingStub {
    val headers = Metadata()
    headers.put(AUTHORIZATION, "Bearer $key")
    return ChatServiceGrpc.newBlockingStub(channel)
        .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers))
        .withDeadlineAfter(CALL_TIMEOUT_SECONDS, TimeUnit.SECONDS)
}

fun params(model: String, text: String): ChatCompletionParams.Builder =
    ChatCompletionParams.newBuilder()
        .setModel(model)
        .addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_USER).setContent(text))

/** Reads the status of a failed call, including the ErrorInfo detail when there is one. */
fun callError(error: StatusRuntimeException): Map<String, Any?> {
    val result = linkedMapOf<String, Any?>(
        "code" to error.status.code.value(),
        "message" to error.status.description,
        "reason" to "",
        "domain" to "",
        "metadata" to null
    )
    // The details travel in the grpc-status-details-bin trailer as a google.rpc.Status.
    val details = StatusProto.fromThrowable(error)?.detailsList ?: emptyList()
    for (detail in details) {
        if (detail.`is`(ErrorInfo::class.java)) {
            val info = detail.unpack(ErrorInfo::class.java)
            result["reason"] = info.reason
            result["domain"] = info.domain
            result["metadata"] = info.metadataMap
        }
    }
    return result
}

fun unary(channel: ManagedChannel, key: String, model: String, text: String): Map<String, Any?> {
    val request = CreateChatCompletionRequest.newBuilder().setParams(params(model, text)).build()
    val response = try {
        stub(channel, key).createChatCompletion(request)
    } catch (error: StatusRuntimeException) {
        return callError(error)
    }

    val completion = response.completion
    val choice = completion.getChoices(0)
    return linkedMapOf(
        "code" to 0,
        "content" to choice.message.content,
        "finish_reason" to choice.finishReason,
        "prompt_tokens" to completion.usage.promptTokens,
        "completion_tokens" to completion.usage.completionTokens,
        "total_tokens" to completion.usage.totalTokens,
        "request_id" to response.gateway.requestId,
        "deployment" to response.gateway.deployment,
        "cache" to response.gateway.cache.name
    )
}

fun streamed(channel: ManagedChannel, key: String, model: String, text: String): Map<String, Any?> {
    val options = StreamOptions.newBuilder().setIncludeUsage(true)
    val request = StreamChatCompletionRequest.newBuilder()
        .setParams(params(model, text).setStreamOptions(options))
        .build()

    val content = StringBuilder()
    var chunks = 0
    var finishReason = ""
    var usage: Map<String, Int>? = null
    var requestId = ""
    var deployment = ""
    // The blocking iterator throws StatusRuntimeException when the stream ends with an
    // error, before or after the first chunk.
    try {
        for (message in stub(channel, key).streamChatCompletion(request)) {
            if (message.hasChunk()) {
                chunks += 1
                for (choice in message.chunk.choicesList) {
                    content.append(choice.delta.content)
                    if (choice.finishReason.isNotEmpty()) {
                        finishReason = choice.finishReason
                    }
                }
                val chunkUsage = message.chunk.usage
                if (chunkUsage.totalTokens > 0) {
                    usage = linkedMapOf(
                        "prompt_tokens" to chunkUsage.promptTokens,
                        "completion_tokens" to chunkUsage.completionTokens,
                        "total_tokens" to chunkUsage.totalTokens
                    )
                }
            }
            if (message.hasGateway()) {
                requestId = message.gateway.requestId
                deployment = message.gateway.deployment
            }
        }
    } catch (error: StatusRuntimeException) {
        return callError(error)
    }

    return linkedMapOf(
        "code" to 0,
        "content" to content.toString(),
        "chunks" to chunks,
        "finish_reason" to finishReason,
        "usage" to usage,
        "request_id" to requestId,
        "deployment" to deployment
    )
}

fun listModels(channel: ManagedChannel, key: String): Map<String, Any?> {
    val response = try {
        stub(channel, key).listModels(ListModelsRequest.getDefaultInstance())
    } catch (error: StatusRuntimeException) {
        return callError(error)
    }
    return linkedMapOf("code" to 0, "ids" to response.modelsList.map { it.id })
}

fun main(args: Array<String>) {
    if (args.size != 2) {
        System.err.println("usage: chat_client ADDRESS API_KEY")
        exitProcess(2)
    }
    val (address, apiKey) = args

    // The edge listens without TLS on 127.0.0.1.
    val channel = ManagedChannelBuilder.forTarget(address).usePlaintext().build()
    try {
        val result = linkedMapOf(
            "unary" to unary(channel, apiKey, "gpt-4o-mini", "Hello from Kotlin"),
            "stream" to streamed(channel, apiKey, "gpt-4o-mini", "Stream to Kotlin"),
            "models" to listModels(channel, apiKey),
            "bad_key" to unary(channel, INVALID_KEY, "gpt-4o-mini", "hi"),
            "unknown_model" to unary(channel, apiKey, "no-such-model", "hi"),
            "premium_model" to unary(channel, apiKey, "gpt-4o", "hi")
        )
        println(GsonBuilder().serializeNulls().create().toJson(result))
    } finally {
        channel.shutdown().awaitTermination(5, TimeUnit.SECONDS)
    }
}
