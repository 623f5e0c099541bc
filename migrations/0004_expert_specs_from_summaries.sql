-- Experts stored before objective specs: the spec their family, schedule and the run's FM time
-- sampling stand for, in canonical form (packages/diffusion's registry: defaults filled in).
UPDATE `experts` SET `spec` = CASE `objective`
  WHEN 'ddpm' THEN json_object('name', 'ddpm', 'schedule', CASE `schedule`
    WHEN 'linear' THEN json_object('kind', 'linear', 'T', 1000, 'betaStart', 0.0001, 'betaEnd', 0.02)
    ELSE json_object('kind', 'cosine', 'T', 1000, 's', 0.008) END)
  WHEN 'fm' THEN json_object('name', 'fm', 'timeSampling', CASE
    (SELECT json_extract(`runs`.`config`, '$.fmTimeSampling') FROM `runs` WHERE `runs`.`id` = `experts`.`run_id`)
    WHEN 'logit-normal' THEN json_object('kind', 'logit-normal', 'mean', 0, 'std', 1)
    ELSE json_object('kind', 'uniform') END)
  END
WHERE `spec` IS NULL AND `objective` != 'any';
