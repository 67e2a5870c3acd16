// Package kvtest is the conformance suite of kv.Engine: every engine (storage/bolt,
// storage/etcd) runs Run from its own tests, and an engine is done when the suite
// passes. It checks the contract written in package kv, one subtest per behaviour.
package kvtest
