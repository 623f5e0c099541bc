ALTER TABLE `checkpoints` ADD `resume_loss_ratio` real;--> statement-breakpoint
ALTER TABLE `checkpoints` ADD `resume_checked_at` integer;--> statement-breakpoint
ALTER TABLE `experts` ADD `acceptance_mid_ratio` real;--> statement-breakpoint
ALTER TABLE `experts` ADD `acceptance_high_ratio` real;--> statement-breakpoint
ALTER TABLE `experts` ADD `acceptance_specificity` real;