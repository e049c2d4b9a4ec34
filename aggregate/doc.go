// Package aggregate combines participants' updates into a new global model.
// Updates are summed as they arrive, so memory is O(model), not
// O(cohort × model).
package aggregate
