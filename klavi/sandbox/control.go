package sandbox

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/klavi-billing/billingd/klavi"
)

// Consent changes that happen away from the API (the payer at the bank, the clock),
// which the daemon learns of only by reading the consent (GET .../consents/{id}) or
// by its payments' outcomes. Each is an in-process method and a /_sandbox/ endpoint:
//
//	POST /_sandbox/consents/{consentId}/authorize  CONSENT_AWAITING_AUTHORIZATION → CONSENT_AUTHORIZED
//	POST /_sandbox/consents/{consentId}/reject     CONSENT_AWAITING_AUTHORIZATION → CONSENT_REJECTED (USER_REJECTED)
//	POST /_sandbox/consents/{consentId}/revoke     CONSENT_AUTHORIZED → CONSENT_REVOKED (?reason=REVOKED_USER, the default, or REVOKED_MERCHANT)
//	POST /_sandbox/consents/{consentId}/expire     CONSENT_AUTHORIZED → CONSENT_PERIOD_EXPIRED;
//	                                               CONSENT_AWAITING_AUTHORIZATION → CONSENT_REJECTED (AUTHORIZATION_EXPIRED_TIME)
//
// Each answers 200 with the consent as GET .../consents/{id} shows it, 404 for an
// unknown consent, 409 (rule consent_state) when its status does not allow the
// change, 410 when authorizing a consent that waited more than 60 minutes. A
// revoked, rejected or expired consent refuses later payments (416,
// consent_not_authorized), and a payment settling under a revoked one is rejected
// with the revocation's reason.

// Consent actions.
const (
	actionAuthorize = "authorize"
	actionReject    = "reject"
	actionRevoke    = "revoke"
	actionExpire    = "expire"
)

// ErrConsentState is returned (wrapped) when a consent's status does not allow the
// change asked for.
var ErrConsentState = errors.New("consent status does not allow this change")

// AuthorizeConsent authorizes a consent awaiting authorization, as the payer does
// at the consentRedirectUrl. An error says the consent is unknown, not awaiting
// authorization (ErrConsentState), or waited more than 60 minutes.
func (s *Server) AuthorizeConsent(id string) error { return s.consentAction(id, actionAuthorize, "") }

// RevokeConsent revokes an authorized consent "at the bank": CONSENT_REVOKED with
// reason (REVOKED_USER when empty; REVOKED_MERCHANT is the other). Later payments
// are refused; payments settling under it are rejected with reason.
func (s *Server) RevokeConsent(id string, reason klavi.ReasonCode) error {
	return s.consentAction(id, actionRevoke, reason)
}

// RejectConsent rejects a consent awaiting authorization, as a payer who declines
// at the bank: CONSENT_REJECTED with USER_REJECTED.
func (s *Server) RejectConsent(id string) error { return s.consentAction(id, actionReject, "") }

// ExpireConsent ends a consent's life early: an authorized one becomes
// CONSENT_PERIOD_EXPIRED (as at its expirationDateTime), one awaiting authorization
// CONSENT_REJECTED with AUTHORIZATION_EXPIRED_TIME (as after 60 minutes).
func (s *Server) ExpireConsent(id string) error { return s.consentAction(id, actionExpire, "") }

func (s *Server) consentAction(id, action string, reason klavi.ReasonCode) error {
	now := s.lockNow()
	cs := s.consents[id]
	if cs == nil {
		s.unlock()
		return fmt.Errorf("%s consent %s: no such consent", action, id)
	}
	rf := s.changeConsent(cs, action, reason, now)
	s.unlock()
	if err := s.sync(); err != nil {
		return err
	}
	if rf != nil {
		if rf.status == 409 {
			return fmt.Errorf("%s consent %s: %w: %s", action, id, ErrConsentState, rf.msg)
		}
		return fmt.Errorf("%s consent %s: %s", action, id, rf.msg)
	}
	return nil
}

// changeConsent applies action to cs at now. Callers hold s.mu.
func (s *Server) changeConsent(cs *consentState, action string, reason klavi.ReasonCode, now time.Time) *refusal {
	st := s.consentStatus(cs, now)
	wrong := func() *refusal {
		return &refusal{status: 409, rule: RuleConsentState, msg: fmt.Sprintf("consent is %s: cannot %s it", st, action)}
	}
	switch action {
	case actionAuthorize:
		return s.authorizeConsent(cs, now)
	case actionReject:
		if st != klavi.ConsentAwaitingAuthorization {
			return wrong()
		}
		s.setConsentStatus(cs, klavi.ConsentRejected, &klavi.StatusReason{Code: klavi.ReasonUserRejected, Message: "rejected by the payer"}, now)
	case actionRevoke:
		if st != klavi.ConsentAuthorized {
			return wrong()
		}
		if reason == "" {
			reason = klavi.ReasonRevokedUser
		}
		if !reason.ConsentGone() {
			return &refusal{status: 400, rule: RuleInvalidRequest, msg: fmt.Sprintf("reason %q: want REVOKED_USER or REVOKED_MERCHANT", reason)}
		}
		s.setConsentStatus(cs, klavi.ConsentRevoked, &klavi.StatusReason{Code: reason, Message: "revoked at the bank"}, now)
	case actionExpire:
		switch st {
		case klavi.ConsentAuthorized:
			s.setConsentStatus(cs, klavi.ConsentPeriodExpired, nil, now)
		case klavi.ConsentAwaitingAuthorization:
			s.setConsentStatus(cs, klavi.ConsentRejected, &klavi.StatusReason{Code: klavi.ReasonAuthorizationExpiredTime, Message: "not authorized in time"}, now)
		default:
			return wrong()
		}
	default:
		return &refusal{status: 404, rule: RuleNotFound, msg: fmt.Sprintf("no consent action %q: want authorize, reject, revoke or expire", action)}
	}
	return nil
}

// authorizeConsent authorizes cs if it awaits authorization and has waited 60
// minutes at most. Callers hold s.mu.
func (s *Server) authorizeConsent(cs *consentState, now time.Time) *refusal {
	switch st := s.consentStatus(cs, now); {
	case st == klavi.ConsentAwaitingAuthorization:
		s.setConsentStatus(cs, klavi.ConsentAuthorized, nil, now)
		return nil
	case cs.reason != nil && cs.reason.Code == klavi.ReasonAuthorizationExpiredTime:
		return &refusal{status: 410, rule: RuleAuthorization, msg: "not authorized within 60 minutes: the consent is rejected"}
	default:
		return &refusal{status: 409, rule: RuleAuthorization, msg: fmt.Sprintf("consent is %s, not awaiting authorization", st)}
	}
}

// handleConsentAction serves POST /_sandbox/consents/{consentId}/{action}.
func (s *Server) handleConsentAction(r *http.Request) reply {
	id, action := r.PathValue("consentId"), r.PathValue("action")
	now := s.lockNow()
	defer s.unlock()
	cs := s.consents[id]
	if cs == nil {
		return notFound("no consent %s", id)
	}
	reason := klavi.ReasonCode(r.URL.Query().Get("reason"))
	if reason != "" {
		var rc klavi.ReasonCode
		if err := rc.UnmarshalText([]byte(reason)); err == nil {
			reason = rc
		}
	}
	if rf := s.changeConsent(cs, action, reason, now); rf != nil {
		return errReply(rf)
	}
	return reply{status: 200, body: s.consentView(cs, now, r, true)}
}
