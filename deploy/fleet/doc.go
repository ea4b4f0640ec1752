// Package fleet deploys many appliances across targets from one inventory
// (fleet.yaml, see example/fleet.yaml): one Control node first, its
// Secondary nodes once it answers, at most Options.Concurrency at a time.
//
// Load checks an inventory completely before anything is touched and
// reports every problem at once as file:line: reason: unknown keys, types,
// undefined targets and driver kinds, missing images and secrets, duplicate
// VM names, host names and addresses, the number of control nodes, and
// each node's first-boot answers through firstboot/answers.FromKeys (and,
// for vSphere targets, whether the OVA declares them). Secrets are never
// written inline: {env: NAME} or {file: PATH} (a 0600 file). Open then
// opens each target through the driver registry of package deploy; the
// fleet knows no driver package, and a driver's settings are decoded with
// the same strict, line-numbered checking.
//
// Plan asks each node's target what a run would do (its drivers run every
// pre-flight check) and lists the cluster's orphans: VMs whose deploy
// record names this inventory's cluster but no node. Run deploys, with
// Options.Prune it removes the orphans too; Remove removes nodes, Scrub
// clears secrets; Options.Only limits each to some nodes. A target that
// cannot be opened fails its nodes with one TargetError, reported once,
// and is opened again on the next attempt.
//
// Run keeps the deploy package's idempotence contract: every attempt plans
// afresh, so a re-run changes nothing in place, a leftover of a failed or
// interrupted attempt is replaced (never duplicated), and an interrupted
// run can simply be run again. Failures that are not deploy.IsPermanent are
// retried with a doubling backoff; one node's failure never stops the
// others, and a failed control node skips its secondaries with the reason.
//
// YAML is read with gopkg.in/yaml.v3 into yaml.Node trees, which keep line
// numbers. Its Decoder.KnownFields would reject unknown keys, but only when
// decoding bytes, where a target's sub-document would lose the file's line
// numbers; so unknown keys are found by walking the node tree against the
// destination type (strict.go).
package fleet
