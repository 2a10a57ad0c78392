;; Never returns: only the wall-clock timeout (or fuel) stops it.
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (loop $forever (br $forever))
  (unreachable))
