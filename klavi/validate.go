package klavi

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
)

// The API's field rules (klavi-api.md). Messages never echo personal data: an
// identifier, account number, name, phone or e-mail is described, not quoted.
var (
	reContractID = regexp.MustCompile(`^[a-zA-Z0-9]{1,35}$`)
	reCurrency   = regexp.MustCompile(`^[A-Z]{3}$`)
	reISPB       = regexp.MustCompile(`^[0-9]{8}$`)
	reIssuer     = regexp.MustCompile(`^[0-9]{1,4}$`)
	reNumber     = regexp.MustCompile(`^[0-9]{1,20}$`)
	reIBGE       = regexp.MustCompile(`^[0-9]{7}$`)
	reCPF        = regexp.MustCompile(`^[0-9]{11}$`)
	reCNPJ       = regexp.MustCompile(`^[0-9]{14}$`)
	reCNPJAlnum  = regexp.MustCompile(`^[0-9A-Z]{12}[0-9]{2}$`)
	// Open Finance Brasil's contractDebtor.name pattern (seed 003 prints it with the
	// punctuation lost): Latin-1 letters, digits, space and , . @ : & * + _ < > ( ) ! ? / \ $ % ' -
	reDebtorName   = regexp.MustCompile(`^[A-Za-zÀ-ÖØ-öø-ÿ0-9 ,.@:&*+_<>()!?/\\$%'-]+$`)
	maxTextLen     = 140
	maxIDLen       = 256
	maxProxyLen    = 77
	maxQRCodeBytes = 512
	maxNameLen     = 120
)

// CheckID reports whether id can be used as a consent, payment or app id, and says
// what is wrong when it cannot. Ids are opaque strings to billingd: the seeds' schema
// gives the Open Finance urn: pattern (maxLength 256), while every example id in the
// seeds (002, 003, 004) is a plain UUID such as 06c26b65-497d-431e-8b50-c86ece05114a,
// so both forms, and any other, are accepted within these bounds:
//
//   - 1 to 256 characters (the seeds' maxLength 256);
//   - valid UTF-8, every character printable: no control character, no NUL;
//   - no whitespace and no '/', and not "." or "..": an id is one path segment,
//     and such an id would name another resource.
//
// Everything else (':', '%', '?', '#', letters of any script) is allowed: the client
// escapes each id as a path segment (url.PathEscape). The error names the problem
// and echoes at most the first 40 characters of the id, non-printable ones replaced
// (ids are not personal data).
func CheckID(id string) error {
	if id == "" {
		return errors.New("id is empty")
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("id %q is not valid UTF-8", echoID(id))
	}
	n := 0
	for i, r := range id {
		n++
		switch {
		case r == '/':
			return fmt.Errorf("id %q has a '/' at byte %d: an id is one path segment", echoID(id), i)
		case unicode.IsSpace(r):
			return fmt.Errorf("id %q has whitespace (%U) at byte %d", echoID(id), r, i)
		case !unicode.IsPrint(r):
			return fmt.Errorf("id %q has a non-printable character (%U) at byte %d", echoID(id), r, i)
		}
	}
	if n > maxIDLen {
		return fmt.Errorf("id %q is %d characters long, the limit is %d", echoID(id), n, maxIDLen)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("id %q is a relative path segment", id)
	}
	return nil
}

// echoID is the part of a bad id an error may quote: its first 40 characters, each
// invalid byte or non-printable character shown as U+FFFD, so that quoting it never
// grows it past about 80 characters.
func echoID(id string) string {
	s := strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(id, string(utf8.RuneError)))
	return truncate(s, 40)
}

// ValidResourceID reports whether id is a valid consent or payment id
// (CheckID(id) == nil).
func ValidResourceID(id string) bool { return CheckID(id) == nil }

func checkResourceID(l *problem.List, path, id string) {
	if id == "" {
		l.Addf(path, "is required")
		return
	}
	if err := CheckID(id); err != nil {
		l.Addf(path, "%v", err)
	}
}

func checkClientRequestID(l *problem.List, path, id string) {
	switch {
	case id == "":
		l.Addf(path, "is required")
	case !visibleASCII(id, 100):
		l.Addf(path, "%q must be 1 to 100 printable ASCII characters with no spaces", truncate(id, 40))
	}
}

func checkRequired(l *problem.List, path string, present bool) bool {
	if !present {
		l.Addf(path, "is required")
	}
	return present
}

func checkText(l *problem.List, path, s string) {
	if n := utf8.RuneCountInString(s); n > maxTextLen {
		l.Addf(path, "is %d characters long, the limit is %d", n, maxTextLen)
	}
}

func checkCurrency(l *problem.List, path, c string) {
	switch {
	case c == Currency: // the usual request: no pattern to run
	case c == "":
		l.Addf(path, "is required")
	case !reCurrency.MatchString(c):
		l.Addf(path, "%q must be an ISO 4217 code of 3 upper-case letters", truncate(c, 10))
	case c != Currency:
		l.Addf(path, "%q is not supported: only %s", c, Currency)
	}
}

func checkAmount(l *problem.List, path string, c Cents, positive bool) {
	switch {
	case c < 0:
		l.Addf(path, "%s must not be negative", c)
	case positive && c == 0:
		l.Addf(path, "must be more than 0.00")
	case c > MaxCents:
		l.Addf(path, "%s is more than the largest amount, %s", c, MaxCents)
	}
}

func checkIBGE(l *problem.List, path, code string) {
	if code != "" && !reIBGE.MatchString(code) {
		l.Addf(path, "%q must be a 7-digit IBGE town code", truncate(code, 10))
	}
}

func checkExternalInfo(l *problem.List, path string, m map[string]string) {
	for k, v := range m {
		if !visibleASCII(k, 64) {
			l.Addf(problem.Join(path, k), "key must be 1 to 64 printable ASCII characters with no spaces")
		}
		if utf8.RuneCountInString(v) > 1024 {
			l.Addf(problem.Join(path, k), "value is longer than 1024 characters")
		}
	}
}

// checkPerson validates identifierType/identifier/name. alnumCNPJ admits the new
// alphanumeric CNPJ (contractDebtor only); needName makes the name required.
func checkPerson(l *problem.List, path string, p *Person, alnumCNPJ, needName bool) {
	if !checkRequired(l, path, p != nil) {
		return
	}
	checkIdentifier(l, problem.Join(path, "identifierType"), problem.Join(path, "identifier"), p.IdentifierType, p.Identifier, alnumCNPJ)
	if needName && p.Name == "" {
		l.Addf(problem.Join(path, "name"), "is required")
	}
	if n := utf8.RuneCountInString(p.Name); n > maxNameLen {
		l.Addf(problem.Join(path, "name"), "is %d characters long, the limit is %d", n, maxNameLen)
	} else if alnumCNPJ && p.Name != "" {
		if err := CheckDebtorName(p.Name); err != nil {
			l.Addf(problem.Join(path, "name"), "%v", err)
		}
	}
}

// checkIdentifier checks a document and its type, reported under tp and ip; the
// document is never quoted.
func checkIdentifier(l *problem.List, tp, ip string, t IdentifierType, id string, alnumCNPJ bool) {
	switch {
	case t == "":
		l.Addf(tp, "is required")
	case !t.Valid():
		l.Addf(tp, "%q must be CPF or CNPJ", truncate(string(t), 10))
	}
	switch {
	case id == "":
		l.Addf(ip, "is required")
	case t == CPF && !reCPF.MatchString(id):
		l.Addf(ip, "must be 11 digits for a CPF (got %d characters)", len(id))
	case t == CNPJ && alnumCNPJ && !reCNPJAlnum.MatchString(id):
		l.Addf(ip, "must be 14 characters for a CNPJ: 12 digits or upper-case letters, then 2 digits (got %d characters)", len(id))
	case t == CNPJ && !alnumCNPJ && !reCNPJ.MatchString(id):
		l.Addf(ip, "must be 14 digits for a CNPJ (got %d characters)", len(id))
	}
}

func checkCustomer(l *problem.List, path string, c *Customer) {
	if !checkRequired(l, path, c != nil) {
		return
	}
	checkIdentifier(l, problem.Join(path, "identifierType"), problem.Join(path, "identifier"), c.IdentifierType, c.Identifier, false)
	if n := utf8.RuneCountInString(c.Name); n > maxNameLen {
		l.Addf(problem.Join(path, "name"), "is %d characters long, the limit is %d", n, maxNameLen)
	}
	if len(c.Email) > 254 {
		l.Addf(problem.Join(path, "email"), "is longer than 254 characters")
	}
	if len(c.Phone) > 20 {
		l.Addf(problem.Join(path, "phone"), "is longer than 20 characters")
	}
}

// holderRule says what an account's holder may be in a request.
type holderRule int

const (
	// holderForbidden: the schema has no holder here (debtorAccount, seeds 000 and
	// 003): one set is refused rather than silently dropped.
	holderForbidden holderRule = iota
	// holderOptional: may be absent; when present, identifierType, identifier and
	// name are all required (creditorAccount of a consent, seed 003).
	holderOptional
	// holderLoose: may be absent, and so may each of its fields; those present must
	// be well formed (creditorAccount of a payment, seed 002).
	holderLoose
	// holderRequired: identifierType, identifier and name required (PIX_MANU, seed 000).
	holderRequired
)

// checkAccount validates an account and its holder by rule.
func checkAccount(l *problem.List, path string, a *Account, rule holderRule) {
	if a == nil {
		return
	}
	j := func(f string) string { return problem.Join(path, f) }
	switch {
	case a.ISPB == "":
		l.Addf(j("ispb"), "is required")
	case !reISPB.MatchString(a.ISPB):
		l.Addf(j("ispb"), "must be 8 digits")
	}
	switch {
	case a.Number == "":
		l.Addf(j("number"), "is required")
	case !reNumber.MatchString(a.Number):
		l.Addf(j("number"), "must be 1 to 20 digits")
	}
	switch {
	case a.AccountType == "":
		l.Addf(j("accountType"), "is required")
	case !a.AccountType.Valid():
		l.Addf(j("accountType"), "%q must be one of CACC, SVGS, TRAN", truncate(string(a.AccountType), 10))
	}
	switch {
	case a.Issuer == "" && (a.AccountType == CACC || a.AccountType == SVGS):
		l.Addf(j("issuer"), "is required for a %s account", a.AccountType)
	case a.Issuer != "" && !reIssuer.MatchString(a.Issuer):
		l.Addf(j("issuer"), "must be 1 to 4 digits")
	}
	switch {
	case rule == holderForbidden && a.Holder != nil:
		l.Addf(j("holder"), "must not be set: the API takes no holder for this account")
	case rule == holderRequired || (rule == holderOptional && a.Holder != nil):
		checkPerson(l, j("holder"), a.Holder, false, true)
	case rule == holderLoose && a.Holder != nil:
		checkLooseHolder(l, j("holder"), a.Holder)
	}
}

// checkLooseHolder checks the fields of a holder that are present (seed 002: each
// is optional). An identifier without a type must still be 11 or 14 digits.
func checkLooseHolder(l *problem.List, path string, p *Person) {
	tp, ip := problem.Join(path, "identifierType"), problem.Join(path, "identifier")
	if p.IdentifierType != "" && !p.IdentifierType.Valid() {
		l.Addf(tp, "%q must be CPF or CNPJ", truncate(string(p.IdentifierType), 10))
	}
	switch {
	case p.Identifier == "":
	case p.IdentifierType == CPF && !reCPF.MatchString(p.Identifier):
		l.Addf(ip, "must be 11 digits for a CPF (got %d characters)", len(p.Identifier))
	case p.IdentifierType == CNPJ && !reCNPJ.MatchString(p.Identifier):
		l.Addf(ip, "must be 14 digits for a CNPJ (got %d characters)", len(p.Identifier))
	case p.IdentifierType == "" && !reCPF.MatchString(p.Identifier) && !reCNPJ.MatchString(p.Identifier):
		l.Addf(ip, "must be 11 (CPF) or 14 (CNPJ) digits (got %d characters)", len(p.Identifier))
	}
	if n := utf8.RuneCountInString(p.Name); n > maxNameLen {
		l.Addf(problem.Join(path, "name"), "is %d characters long, the limit is %d", n, maxNameLen)
	}
}

func checkClientMetadata(l *problem.List, path string, m *ClientMetadata) {
	if !checkRequired(l, path, m != nil) {
		return
	}
	j := func(f string) string { return problem.Join(path, f) }
	switch {
	case m.Platform == "":
		l.Addf(j("platform"), "is required")
	case !m.Platform.Valid():
		l.Addf(j("platform"), "%q must be BROWSER or APP", truncate(string(m.Platform), 20))
	}
	switch {
	case m.OS == "":
		l.Addf(j("os"), "is required")
	case !m.OS.Valid():
		l.Addf(j("os"), "%q must be one of LINUX, MACOS, UNIX, WINDOWS, IOS, ANDROID, OTHER", truncate(string(m.OS), 20))
	}
	if m.OSVersion == "" {
		l.Addf(j("osVersion"), "is required")
	}
}

// checkRedirectURL: any absolute URI (RFC 3986: a scheme, then anything), so an
// app's deep link (myapp://return) is as good as an https URL; the seeds set no
// scheme. No whitespace or control characters.
func checkRedirectURL(l *problem.List, path, u string, required bool) {
	if u == "" {
		if required {
			l.Addf(path, "is required")
		}
		return
	}
	pu, err := url.Parse(u)
	switch {
	case strings.IndexFunc(u, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		l.Addf(path, "must be an absolute URI with no spaces or control characters")
	case err != nil || pu.Scheme == "" || (pu.Opaque == "" && pu.Host == "" && pu.Path == ""):
		l.Addf(path, "must be an absolute URI (a scheme and a target: https://merchant.example/return, myapp://return)")
	}
}

// Validate lists every rule r breaks; an empty list means it may be sent.
func (r *CreateConsentRequest) Validate() problem.List {
	var l problem.List
	checkClientRequestID(&l, "clientRequestId", r.ClientRequestID)
	checkInstitution(&l, "institutionId", r.InstitutionID)
	if r.Customer != nil {
		checkCustomer(&l, "customer", r.Customer)
	}
	checkLoggedUser(&l, r.Customer, r.LoggedUserCPF)
	checkRedirectURL(&l, "redirectUrl", r.RedirectURL, false)
	checkText(&l, "additionalInformation", r.AdditionalInformation)
	checkAccount(&l, "debtorAccount", r.DebtorAccount, holderForbidden)
	checkAccount(&l, "creditorAccount", r.CreditorAccount, holderOptional)
	checkExternalInfo(&l, "externalInfo", r.ExternalInfo)
	checkClientMetadata(&l, "clientMetadata", r.ClientMetadata)
	if checkRequired(&l, "paymentMethodConfig", r.PaymentMethodConfig != nil) {
		l.Merge("paymentMethodConfig", r.PaymentMethodConfig.validate())
		pmc := r.PaymentMethodConfig
		if r.ExpirationDateTime != nil && !pmc.ReferenceStartDate.IsZero() {
			if exp := cycle.DateOf(r.ExpirationDateTime.Time); exp.Before(pmc.ReferenceStartDate) {
				l.Addf("expirationDateTime", "%s (Brasília date %s) is before paymentMethodConfig.referenceStartDate %s: no cycle could be billed",
					r.ExpirationDateTime.UTC().Format(DateTimeLayout), exp, pmc.ReferenceStartDate)
			}
		}
	}
	return l
}

func checkInstitution(l *problem.List, path, id string) {
	switch {
	case id == "":
		l.Addf(path, "is required")
	case !visibleASCII(id, 256):
		l.Addf(path, "must be 1 to 256 printable ASCII characters with no spaces")
	}
}

// checkLoggedUser: a CNPJ customer needs the CPF of the person acting for it.
func checkLoggedUser(l *problem.List, c *Customer, cpf string) {
	if cpf != "" && !reCPF.MatchString(cpf) {
		l.Addf("loggedUserCpf", "must be 11 digits")
	}
	if c != nil && c.IdentifierType == CNPJ && cpf == "" {
		l.Addf("loggedUserCpf", "is required when the customer is a CNPJ")
	}
}

func (p *PaymentMethodConfig) validate() problem.List {
	var l problem.List
	switch {
	case p.ContractID == "":
		l.Addf("contractId", "is required")
	case !reContractID.MatchString(p.ContractID):
		l.Addf("contractId", "%q must be 1 to 35 letters or digits", truncate(p.ContractID, 40))
	}
	checkCurrency(&l, "currency", p.Currency)
	if !p.Interval.Valid() {
		l.Addf("interval", "is required: one of WEEKLY, MONTHLY, QUARTERLY, SEMIANNUAL, YEARLY")
	}
	if p.ReferenceStartDate.IsZero() {
		l.Addf("referenceStartDate", "is required (YYYY-MM-DD)")
	}
	checkPerson(&l, "contractDebtor", p.ContractDebtor, true, true)
	if p.IsRetryAccepted == nil {
		l.Addf("isRetryAccepted", "is required (true or false)")
	}
	if p.FixedAmount != nil {
		checkAmount(&l, "fixedAmount", *p.FixedAmount, true)
		if p.MinimumVariableAmount != nil || p.MaximumVariableAmount != nil {
			l.Addf("fixedAmount", "excludes minimumVariableAmount and maximumVariableAmount: a consent is either fixed or variable")
		}
	}
	if p.MinimumVariableAmount != nil {
		checkAmount(&l, "minimumVariableAmount", *p.MinimumVariableAmount, false)
	}
	if p.MaximumVariableAmount != nil {
		checkAmount(&l, "maximumVariableAmount", *p.MaximumVariableAmount, true)
	}
	if p.MinimumVariableAmount != nil && p.MaximumVariableAmount != nil && *p.MaximumVariableAmount < *p.MinimumVariableAmount {
		l.Addf("maximumVariableAmount", "%s is below minimumVariableAmount %s", *p.MaximumVariableAmount, *p.MinimumVariableAmount)
	}
	if fp := p.FirstPayment; fp != nil {
		checkAmount(&l, "firstPayment.amount", fp.Amount, true)
		checkCurrency(&l, "firstPayment.currency", fp.Currency)
		checkText(&l, "firstPayment.remittanceInformation", fp.RemittanceInformation)
	}
	return l
}

// Validate lists every rule r breaks; an empty list means it may be sent. The retry
// window is checked against the longest one (7 days): only the consent knows whether
// the shorter weekly window applies.
func (r *CreatePaymentRequest) Validate() problem.List {
	var l problem.List
	checkClientRequestID(&l, "clientRequestId", r.ClientRequestID)
	if r.Date.IsZero() {
		l.Addf("date", "is required (YYYY-MM-DD)")
	}
	checkAmount(&l, "amount", r.Amount, true)
	checkCurrency(&l, "currency", r.Currency)
	checkAccount(&l, "creditorAccount", r.CreditorAccount, holderLoose)
	checkText(&l, "remittanceInformation", r.RemittanceInformation)
	checkIBGE(&l, "ibgeTownCode", r.IBGETownCode)
	checkExternalInfo(&l, "externalInfo", r.ExternalInfo)
	if s := r.AutoRetryStrategy; s != nil {
		for _, v := range s.Violations(cycle.Monthly, true) {
			l.Addf(problem.Join("autoRetryStrategy", v.Field), "%s", v.Message)
		}
	}
	return l
}

// Validate lists every rule r breaks.
func (r *RetryPaymentRequest) Validate() problem.List {
	var l problem.List
	checkClientRequestID(&l, "clientRequestId", r.ClientRequestID)
	if r.Date.IsZero() {
		l.Addf("date", "is required (YYYY-MM-DD)")
	}
	return l
}

// Validate lists every rule r breaks, including the initType-dependent ones:
// PIX_MANU needs a full creditorAccount and no proxy; PIX_INIC and PIX_DICT need a
// proxy; PIX_QRCODE needs a qrCode (at most 512 bytes) and a proxy.
func (r *InstantPaymentRequest) Validate() problem.List {
	var l problem.List
	checkClientRequestID(&l, "clientRequestId", r.ClientRequestID)
	checkInstitution(&l, "institutionId", r.InstitutionID)
	switch {
	case r.InitType == "":
		l.Addf("initType", "is required: one of PIX_INIC, PIX_MANU, PIX_DICT, PIX_QRCODE")
	case !r.InitType.Valid():
		l.Addf("initType", "%q must be one of PIX_INIC, PIX_MANU, PIX_DICT, PIX_QRCODE", truncate(string(r.InitType), 20))
	}
	checkCustomer(&l, "customer", r.Customer)
	checkLoggedUser(&l, r.Customer, r.LoggedUserCPF)
	checkIBGE(&l, "ibgeTownCode", r.IBGETownCode)
	if n := utf8.RuneCountInString(r.Proxy); n > maxProxyLen {
		l.Addf("proxy", "is %d characters long, the limit is %d", n, maxProxyLen)
	}
	switch r.InitType {
	case PixManu:
		if r.Proxy != "" {
			l.Addf("proxy", "must not be set for PIX_MANU")
		}
		if r.CreditorAccount == nil {
			l.Addf("creditorAccount", "is required for PIX_MANU")
		}
		checkAccount(&l, "creditorAccount", r.CreditorAccount, holderRequired)
	case PixInic, PixDict, PixQRCode:
		if r.Proxy == "" {
			l.Addf("proxy", "is required for %s", r.InitType)
		}
		checkAccount(&l, "creditorAccount", r.CreditorAccount, holderOptional)
	}
	if r.InitType == PixQRCode && r.QRCode == "" {
		l.Addf("qrCode", "is required for PIX_QRCODE")
	}
	if len(r.QRCode) > maxQRCodeBytes {
		l.Addf("qrCode", "is %d bytes long, the limit is %d", len(r.QRCode), maxQRCodeBytes)
	}
	checkAmount(&l, "amount", r.Amount, true)
	checkCurrency(&l, "currency", r.Currency)
	checkRedirectURL(&l, "redirectUrl", r.RedirectURL, true)
	checkText(&l, "remittanceInformation", r.RemittanceInformation)
	checkAccount(&l, "debtorAccount", r.DebtorAccount, holderForbidden)
	checkExternalInfo(&l, "externalInfo", r.ExternalInfo)
	checkClientMetadata(&l, "clientMetadata", r.ClientMetadata)
	return l
}

// CheckDebtorName reports whether name fits the contractDebtor name rule of Open
// Finance Brasil (seed 003, maxLength 120 checked separately): Latin-1 letters
// (A-Z, a-z, À-Ö, Ø-ö, ø-ÿ), digits, spaces and , . @ : & * + _ < > ( ) ! ? / \ $ % ' -.
// The error never quotes the name.
func CheckDebtorName(name string) error {
	if !reDebtorName.MatchString(name) {
		return fmt.Errorf("name has characters outside Latin-1 letters, digits, spaces and , . @ : & * + _ < > ( ) ! ? / \\ $ %% ' -")
	}
	return nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// visibleASCII reports whether s is 1 to max characters of printable ASCII with no
// space (0x21 to 0x7e): the pattern ^[\x21-\x7e]{1,max}$, checked without a regexp
// (every create request's clientRequestId is checked twice, by the client and by
// the sandbox).
func visibleASCII(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
