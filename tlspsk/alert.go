package tlspsk

import "strconv"

// Alert is a TLS alert description (RFC 8446 6).
type Alert uint8

// Alert descriptions used by this package.
const (
	alertCloseNotify            Alert = 0
	alertUnexpectedMessage      Alert = 10
	alertBadRecordMAC           Alert = 20
	alertRecordOverflow         Alert = 22
	alertHandshakeFailure       Alert = 40
	alertIllegalParameter       Alert = 47
	alertDecodeError            Alert = 50
	alertDecryptError           Alert = 51
	alertProtocolVersion        Alert = 70
	alertInsufficientSecurity   Alert = 71
	alertInternalError          Alert = 80
	alertUserCanceled           Alert = 90
	alertNoRenegotiation        Alert = 100
	alertMissingExtension       Alert = 109
	alertUnsupportedExtension   Alert = 110
	alertUnknownPSKIdentity     Alert = 115
	alertNoApplicationProtocol  Alert = 120
	alertBadCertificate         Alert = 42
	alertCertificateRequired    Alert = 116
	alertAccessDenied           Alert = 49
	alertInappropriateFallback  Alert = 86
	alertDecompressionFailure   Alert = 30
	alertUnsupportedCertificate Alert = 43
)

var alertNames = map[Alert]string{
	alertCloseNotify:            "close_notify",
	alertUnexpectedMessage:      "unexpected_message",
	alertBadRecordMAC:           "bad_record_mac",
	alertRecordOverflow:         "record_overflow",
	alertDecompressionFailure:   "decompression_failure",
	alertHandshakeFailure:       "handshake_failure",
	alertBadCertificate:         "bad_certificate",
	alertUnsupportedCertificate: "unsupported_certificate",
	alertIllegalParameter:       "illegal_parameter",
	alertAccessDenied:           "access_denied",
	alertDecodeError:            "decode_error",
	alertDecryptError:           "decrypt_error",
	alertProtocolVersion:        "protocol_version",
	alertInsufficientSecurity:   "insufficient_security",
	alertInternalError:          "internal_error",
	alertInappropriateFallback:  "inappropriate_fallback",
	alertUserCanceled:           "user_canceled",
	alertNoRenegotiation:        "no_renegotiation",
	alertMissingExtension:       "missing_extension",
	alertUnsupportedExtension:   "unsupported_extension",
	alertUnknownPSKIdentity:     "unknown_psk_identity",
	alertCertificateRequired:    "certificate_required",
	alertNoApplicationProtocol:  "no_application_protocol",
}

// String returns the RFC name of the alert.
func (a Alert) String() string {
	if s, ok := alertNames[a]; ok {
		return s
	}
	return "alert(" + strconv.Itoa(int(a)) + ")"
}

// parseAlert decodes an alert record body: level, description.
func parseAlert(b []byte) (level uint8, desc Alert, ok bool) {
	if len(b) != 2 {
		return 0, 0, false
	}
	if b[0] != 1 && b[0] != 2 {
		return 0, 0, false
	}
	return b[0], Alert(b[1]), true
}
