package simulation

import (
	"fmt"
	"io/fs"
	"path"
	"sort"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/examples"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/scheduler"
)

// Demo builds the scenario and operator amounts of the default simulation, so the
// timeline shows each path once: for a consent that accepts retries, its second
// cycle in the window fails first (and, in local mode, its first retry fails too)
// before a retry settles; a consent without retries has one rejection; a variable
// consent has an amount set for every cycle but its first in the window, which is
// therefore skipped.
func Demo(cs []*consent.Consent, from cycle.Date, pol scheduler.Policy) (*sandbox.Scenario, map[string]map[int]klavi.Cents) {
	sc := &sandbox.Scenario{}
	amounts := map[string]map[int]klavi.Cents{}
	for _, c := range cs {
		pv := pol.Preview(c, from, 6, nil)
		var planned []scheduler.CyclePlan
		for _, cp := range pv.Cycles {
			if cp.State == scheduler.StatePlanned {
				planned = append(planned, cp)
			}
		}
		if _, fixed := c.FixedAmount(); !fixed {
			m := map[int]klavi.Cents{}
			for i, cp := range planned {
				if i > 0 {
					m[cp.Index] = demoAmount(c)
				}
			}
			amounts[c.ID] = m
		}
		if len(planned) < 2 {
			continue
		}
		k := planned[1].Index
		zero, one := 0, 1
		switch {
		case c.Strategy() != nil:
			sc.Rules = append(sc.Rules, sandbox.Rule{ConsentID: c.ID, Cycle: &k, Attempt: &zero, Outcome: sandbox.Rejected, Reason: klavi.ReasonNotInformed})
			if pol.RetryModeOf(c) == consent.Local && len(c.Strategy().Days) > 1 {
				sc.Rules = append(sc.Rules, sandbox.Rule{ConsentID: c.ID, Cycle: &k, Attempt: &one, Outcome: sandbox.Rejected, Reason: klavi.ReasonInfrastructureFailure})
			}
		default:
			sc.Rules = append(sc.Rules, sandbox.Rule{ConsentID: c.ID, Cycle: &k, Attempt: &zero, Outcome: sandbox.Rejected, Reason: klavi.ReasonAccountDoesNotAllowPayment})
		}
	}
	return sc, amounts
}

// demoAmount is an amount that fits a variable consent's limits.
func demoAmount(c *consent.Consent) klavi.Cents {
	a := klavi.Cents(187_45)
	pmc := c.PaymentMethodConfig
	if pmc.MaximumVariableAmount != nil && a > *pmc.MaximumVariableAmount {
		a = *pmc.MaximumVariableAmount
	}
	if pmc.MinimumVariableAmount != nil && a < *pmc.MinimumVariableAmount {
		a = *pmc.MinimumVariableAmount
	}
	return a
}

// Examples decodes the example consents built into the binary (package examples),
// in the order of their file names: the consents of the default simulation.
func Examples() ([]*consent.Consent, error) {
	names, err := fs.Glob(examples.Consents, "consents/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []*consent.Consent
	for _, n := range names {
		data, err := examples.Consents.ReadFile(n)
		if err != nil {
			return nil, err
		}
		c, err := consent.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("embedded %s: %w", path.Base(n), err)
		}
		out = append(out, c)
	}
	return out, nil
}
