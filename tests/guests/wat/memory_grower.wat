;; Grows its memory one page (64 KiB) at a time until the store refuses, then
;; aborts from a function named `oom`, as a real guest's allocator would.
(func $oom (unreachable))
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (loop $more
    (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (call $oom)))
    (br $more))
  (unreachable))
