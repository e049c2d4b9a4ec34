package coordinator

import "time"

// retentionLoop deletes the models no job keeps, and collects Badger's
// value log, on every coordinator.
func (c *Coordinator) retentionLoop() {
	ticker := time.NewTicker(c.cfg.RetentionInterval)
	defer ticker.Stop()
	var collected time.Time
	for {
		select {
		case <-c.stop:
			return
		case <-ticker.C:
		}
		var doomed []string
		for _, d := range c.fsm.PrunableDigests() {
			if ok, _ := c.store.HasBlob(d); ok {
				doomed = append(doomed, d)
			}
		}
		if err := c.store.DeleteBlobs(doomed...); err != nil {
			c.log.Warn("deleting models no job keeps", "models", len(doomed), "err", err)
		} else if len(doomed) > 0 {
			c.log.Debug("deleted models no job keeps", "models", len(doomed))
			c.metrics.modelsDeleted.Add(float64(len(doomed)))
		}
		if time.Since(collected) >= c.cfg.ValueLogGCInterval {
			collected = time.Now()
			if n, err := c.store.CollectGarbage(0.5); err != nil {
				c.log.Warn("collecting the value log", "err", err)
			} else if n > 0 {
				c.log.Info("value log collected", "files_rewritten", n)
			}
		}
	}
}
