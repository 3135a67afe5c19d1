// Command chat_client calls the gateway's typed chat API (aigateway.chat.v1.ChatService)
// through the Envoy edge with stubs from protoc-gen-go and protoc-gen-go-grpc.
//
// Usage:
//
//	chat_client ADDRESS API_KEY
//
// It prints one JSON object with what each call returned, for tests/clients to check.
// It exits 1 only when it cannot produce that object: a failed call is data, not an error.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	chatv1 "github.com/aigateway/aigateway/gen/go/aigateway/chat/v1"
	typev1 "github.com/aigateway/aigateway/gen/go/aigateway/type/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// invalidKey has the shape of a gateway key but matches no key in the store.
const invalidKey = "sk-aigw-invalid0-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

// callTimeout is the deadline of each call. The gateway's provider simulator responds
// in milliseconds, so a call that takes this long has hung.
const callTimeout = 20 * time.Second

// callError is the gRPC status of a failed call and, when the status carries one,
// the google.rpc.ErrorInfo from its details.
type callError struct {
	Code     int32             `json:"code"`
	Message  string            `json:"message"`
	Reason   string            `json:"reason"`
	Domain   string            `json:"domain"`
	Metadata map[string]string `json:"metadata"`
}

type unaryResult struct {
	Code             int32  `json:"code"`
	Content          string `json:"content"`
	FinishReason     string `json:"finish_reason"`
	PromptTokens     int32  `json:"prompt_tokens"`
	CompletionTokens int32  `json:"completion_tokens"`
	TotalTokens      int32  `json:"total_tokens"`
	RequestID        string `json:"request_id"`
	Deployment       string `json:"deployment"`
	Cache            string `json:"cache"`
}

type usage struct {
	PromptTokens     int32 `json:"prompt_tokens"`
	CompletionTokens int32 `json:"completion_tokens"`
	TotalTokens      int32 `json:"total_tokens"`
}

type streamResult struct {
	Code         int32  `json:"code"`
	Content      string `json:"content"`
	Chunks       int    `json:"chunks"`
	FinishReason string `json:"finish_reason"`
	Usage        *usage `json:"usage"`
	RequestID    string `json:"request_id"`
	Deployment   string `json:"deployment"`
}

type modelsResult struct {
	Code int32    `json:"code"`
	IDs  []string `json:"ids"`
}

// withKey returns a context with a deadline that sends key as a bearer token.
func withKey(key string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key), cancel
}

func params(model, text string) *typev1.ChatCompletionParams {
	return &typev1.ChatCompletionParams{
		Model:    model,
		Messages: []*typev1.ChatMessage{{Role: typev1.Role_ROLE_USER, Content: &text}},
	}
}

// toCallError reads the status of a failed call, including the ErrorInfo detail.
func toCallError(err error) *callError {
	st := status.Convert(err)
	failed := &callError{Code: int32(st.Code()), Message: st.Message()}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			failed.Reason = info.GetReason()
			failed.Domain = info.GetDomain()
			failed.Metadata = info.GetMetadata()
		}
	}
	return failed
}

func unary(client chatv1.ChatServiceClient, key, model, text string) interface{} {
	ctx, cancel := withKey(key)
	defer cancel()

	response, err := client.CreateChatCompletion(ctx, &chatv1.CreateChatCompletionRequest{Params: params(model, text)})
	if err != nil {
		return toCallError(err)
	}

	completion := response.GetCompletion()
	choice := completion.GetChoices()[0]
	return &unaryResult{
		Content:          choice.GetMessage().GetContent(),
		FinishReason:     choice.GetFinishReason(),
		PromptTokens:     completion.GetUsage().GetPromptTokens(),
		CompletionTokens: completion.GetUsage().GetCompletionTokens(),
		TotalTokens:      completion.GetUsage().GetTotalTokens(),
		RequestID:        response.GetGateway().GetRequestId(),
		Deployment:       response.GetGateway().GetDeployment(),
		Cache:            response.GetGateway().GetCache().String(),
	}
}

func streamed(client chatv1.ChatServiceClient, key, model, text string) interface{} {
	ctx, cancel := withKey(key)
	defer cancel()

	request := params(model, text)
	request.StreamOptions = &typev1.StreamOptions{IncludeUsage: true}
	stream, err := client.StreamChatCompletion(ctx, &chatv1.StreamChatCompletionRequest{Params: request})
	if err != nil {
		return toCallError(err)
	}

	// Read to io.EOF: the status that ends the stream may be an error even after chunks.
	result := &streamResult{}
	for {
		message, err := stream.Recv()
		if err == io.EOF {
			return result
		}
		if err != nil {
			return toCallError(err)
		}
		if chunk := message.GetChunk(); chunk != nil {
			result.Chunks++
			for _, choice := range chunk.GetChoices() {
				result.Content += choice.GetDelta().GetContent()
				if choice.GetFinishReason() != "" {
					result.FinishReason = choice.GetFinishReason()
				}
			}
			if u := chunk.GetUsage(); u.GetTotalTokens() > 0 {
				result.Usage = &usage{u.GetPromptTokens(), u.GetCompletionTokens(), u.GetTotalTokens()}
			}
		}
		if info := message.GetGateway(); info != nil {
			result.RequestID = info.GetRequestId()
			result.Deployment = info.GetDeployment()
		}
	}
}

func listModels(client chatv1.ChatServiceClient, key string) interface{} {
	ctx, cancel := withKey(key)
	defer cancel()

	response, err := client.ListModels(ctx, &chatv1.ListModelsRequest{})
	if err != nil {
		return toCallError(err)
	}

	result := &modelsResult{IDs: []string{}}
	for _, model := range response.GetModels() {
		result.IDs = append(result.IDs, model.GetId())
	}
	return result
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: chat_client ADDRESS API_KEY")
		os.Exit(2)
	}
	address, apiKey := os.Args[1], os.Args[2]

	// grpc-go 1.33 (Debian 12) has no credentials/insecure package, so WithInsecure is
	// its plaintext option. The edge listens without TLS on 127.0.0.1.
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintf(os.Stderr, "go client: dial %s failed: %v\n", address, err)
		os.Exit(1)
	}
	defer conn.Close()
	client := chatv1.NewChatServiceClient(conn)

	result := map[string]interface{}{
		"unary":         unary(client, apiKey, "gpt-4o-mini", "Hello from Go"),
		"stream":        streamed(client, apiKey, "gpt-4o-mini", "Stream to Go"),
		"models":        listModels(client, apiKey),
		"bad_key":       unary(client, invalidKey, "gpt-4o-mini", "hi"),
		"unknown_model": unary(client, apiKey, "no-such-model", "hi"),
		"premium_model": unary(client, apiKey, "gpt-4o", "hi"),
	}
	if err := json.NewEncoder(os.Stdout).Encode(result); err != nil {
		fmt.Fprintf(os.Stderr, "go client: writing the result failed: %v\n", err)
		os.Exit(1)
	}
}
