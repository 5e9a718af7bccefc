package rest

import (
	"fmt"
	"net/http"
)

// Error is a REST error: the code and description of the error envelope and
// the HTTP status it is sent with. Handlers and Authenticators return *Error
// (possibly wrapped) to choose the envelope; any other error becomes a 500
// INTERNAL_SERVER_ERROR so that internal details never leak to clients.
type Error struct {
	Status      int
	Code        string
	Description string
	// Extra holds additional envelope keys (for example "argument" of
	// ERROR_ARGUMENT). It can never override "error" or "error_description".
	Extra map[string]any
}

func (e *Error) Error() string {
	return fmt.Sprintf("rest: %s (HTTP %d): %s", e.Code, e.Status, e.Description)
}

// Is reports whether target is an *Error with the same code, so callers can
// write errors.Is(err, rest.ExpiredToken()) regardless of description/status.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Error codes of Bitrix's rest module (RestException, OAuthException) and its
// batch.
const (
	CodeNoAuthFound           = "NO_AUTH_FOUND"
	CodeExpiredToken          = "expired_token"
	CodeInvalidToken          = "invalid_token"
	CodeInsufficientScope     = "insufficient_scope"
	CodeInvalidCredentials    = "INVALID_CREDENTIALS"
	CodeInvalidRequest        = "INVALID_REQUEST"
	CodeAccessDenied          = "ACCESS_DENIED"
	CodeOverloadLimit         = "OVERLOAD_LIMIT"
	CodeUserAccessError       = "user_access_error"
	CodeAuthorizationError    = "authorization_error"
	CodeApplicationNotFound   = "APPLICATION_NOT_FOUND"
	CodeConnectionError       = "CONNECTION_ERROR"
	CodeMethodNotFound        = "ERROR_METHOD_NOT_FOUND"
	CodeOperationTimeLimit    = "OPERATION_TIME_LIMIT"
	CodeQueryLimitExceeded    = "QUERY_LIMIT_EXCEEDED"
	CodeInternalServerError   = "INTERNAL_SERVER_ERROR"
	CodeCore                  = "ERROR_CORE"
	CodeArgument              = "ERROR_ARGUMENT"
	CodeWrongAuthType         = "WRONG_AUTH_TYPE"
	CodeBatchLengthExceeded   = "ERROR_BATCH_LENGTH_EXCEEDED"
	CodeBatchMethodNotAllowed = "ERROR_BATCH_METHOD_NOT_ALLOWED"
	// CodeRequestTooLarge is not a Bitrix code: the module has no body limit
	// of its own (PHP's post_max_size silently empties $_POST). pushpull
	// proposes an explicit 413 so clients see why a call failed.
	CodeRequestTooLarge = "ERROR_REQUEST_TOO_LARGE"
)

// NewError builds an arbitrary REST error. A zero status means 400, as a
// RestException without a status gets 400, as in Bitrix's rest module.
func NewError(status int, code, description string) *Error {
	if status == 0 {
		status = http.StatusBadRequest
	}
	return &Error{Status: status, Code: code, Description: description}
}

// Constructors for Bitrix's system-level REST errors. They return fresh
// values so no shared mutable error exists; compare with errors.Is (code
// equality).

// NoAuthFound: no credential matched (401).
func NoAuthFound() *Error {
	return NewError(http.StatusUnauthorized, CodeNoAuthFound, "Wrong authorization data")
}

// ExpiredToken: the OAuth access token has expired (401; clients refresh on it).
func ExpiredToken() *Error {
	return NewError(http.StatusUnauthorized, CodeExpiredToken, "The access token provided has expired")
}

// InvalidToken: unknown or revoked OAuth token (401; b24jssdk refreshes on it).
func InvalidToken() *Error {
	return NewError(http.StatusUnauthorized, CodeInvalidToken, "The access token provided is invalid")
}

// InsufficientScope: the token or webhook lacks the method's scope. 403 as
// the docs say (the module code uses 401; no client distinguishes them).
// kind is Caller.Kind; it selects the "access token"/"webhook token" wording.
func InsufficientScope(kind string) *Error {
	what := "access token"
	if kind == KindWebhook {
		what = "webhook token"
	}
	return NewError(http.StatusForbidden, CodeInsufficientScope,
		"The request requires higher privileges than provided by the "+what)
}

// InvalidCredentials: unknown webhook user or wrong secret (403).
func InvalidCredentials() *Error {
	return NewError(http.StatusForbidden, CodeInvalidCredentials, "Invalid request credentials")
}

// HTTPSRequired: webhook over plain HTTP when that is not allowed (400).
func HTTPSRequired() *Error {
	return NewError(http.StatusBadRequest, CodeInvalidRequest, "Https required.")
}

// AccessDenied (403). An empty description gives "Access denied!".
func AccessDenied(description string) *Error {
	if description == "" {
		description = "Access denied!"
	}
	return NewError(http.StatusForbidden, CodeAccessDenied, description)
}

// OverloadLimit: the app or webhook is blocked manually (503).
func OverloadLimit() *Error {
	return NewError(http.StatusServiceUnavailable, CodeOverloadLimit, "REST API is blocked due to overload.")
}

// UserAccessError: the app is restricted to other users (403).
func UserAccessError() *Error {
	return NewError(http.StatusForbidden, CodeUserAccessError, "The user does not have access to the application.")
}

// AuthorizationError: the user cannot be logged in (401).
func AuthorizationError() *Error {
	return NewError(http.StatusUnauthorized, CodeAuthorizationError, "Unable to authorize user")
}

// ApplicationNotFound: the token's client_id is not installed or inactive (401).
func ApplicationNotFound() *Error {
	return NewError(http.StatusUnauthorized, CodeApplicationNotFound, "Application not found")
}

// ConnectionError: the authorization backend is unreachable (401, as the module does).
func ConnectionError() *Error {
	return NewError(http.StatusUnauthorized, CodeConnectionError, "Error connecting to authorization server")
}

// MethodNotFound: unknown method (404), checked before authentication.
func MethodNotFound() *Error {
	return NewError(http.StatusNotFound, CodeMethodNotFound, "Method not found!")
}

// OperationTimeLimit: the operating-time limiter blocked the method (429).
func OperationTimeLimit() *Error {
	return NewError(http.StatusTooManyRequests, CodeOperationTimeLimit, "Method is blocked due to operation time limit.")
}

// QueryLimitExceeded: request-rate limiting (503).
func QueryLimitExceeded() *Error {
	return NewError(http.StatusServiceUnavailable, CodeQueryLimitExceeded, "Too many requests")
}

// InternalError: an infrastructure failure (500). Used for non-REST errors
// and panics so internal details are logged, not sent.
func InternalError() *Error {
	return NewError(http.StatusInternalServerError, CodeInternalServerError, "Internal server error")
}

// ArgumentError: a bad argument (400) with the "argument" key of ERROR_ARGUMENT.
func ArgumentError(argument, description string) *Error {
	e := NewError(http.StatusBadRequest, CodeArgument, description)
	e.Extra = map[string]any{"argument": argument}
	return e
}

// WrongAuthType: the method refuses this kind of authorization (403). An
// empty description gives the generic AuthTypeException message; the pull
// handlers pass their own.
func WrongAuthType(description string) *Error {
	if description == "" {
		description = "Current authorization type is denied for this method"
	}
	return NewError(http.StatusForbidden, CodeWrongAuthType, description)
}

// BatchLengthExceeded: a batch item beyond the 50th (reported inside
// result_error; the status is the docs' 400 and only matters outside batch).
func BatchLengthExceeded() *Error {
	return NewError(http.StatusBadRequest, CodeBatchLengthExceeded, "Max batch length exceeded")
}

// BatchMethodNotAllowed: batch/download/upload inside a batch (inside result_error).
func BatchMethodNotAllowed() *Error {
	return NewError(http.StatusMethodNotAllowed, CodeBatchMethodNotAllowed, "Method is not allowed for batch usage")
}

// RequestTooLarge: the body exceeds Options.MaxBody (413, pushpull's proposal).
func RequestTooLarge() *Error {
	return NewError(http.StatusRequestEntityTooLarge, CodeRequestTooLarge, "Request body is too large")
}

// TooManyParameters: a JSON body holds more than MaxJSONValues values (413,
// pushpull's proposal, with RequestTooLarge's code: the body is too large
// in values rather than in bytes).
func TooManyParameters() *Error {
	return NewError(http.StatusRequestEntityTooLarge, CodeRequestTooLarge, "Request has too many parameters")
}
